/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Building the dm table that turns runs of mapped chunks into linear
 * segments into the CoW device (pure: unit-tested on the host).
 */
#ifndef COW_TABLE_H
#define COW_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct mapping {
	uint64_t chunk;
	uint64_t sector; /* CoW-device sector */
};

struct segment {
	uint64_t start, len; /* device sectors */
	int linear;          /* 1: linear to cow_sector; 0: a cow target */
	uint64_t cow_sector;
};

struct table_stats {
	size_t linear_segments, cow_segments;
	uint64_t linear_chunks; /* mapped chunks served by linear segments */
	uint64_t tree_chunks;   /* mapped chunks left to the kernel's tree */
	int capped;             /* runs left out because of max_linear */
};

struct table_policy {
	size_t max_linear;      /* linear segments at most (first in device order) */
	uint64_t min_run;       /* shorter runs stay in the kernel's tree */
};

/*
 * @maps: the committed mappings, sorted by chunk, no duplicates.  Every run
 * of at least @pol->min_run consecutive chunks whose CoW sectors are
 * consecutive too becomes one linear segment (at most @pol->max_linear of
 * them, the first in device order); the rest of [0, dev_len) is cow
 * segments, whose chunks the kernel's remap tree serves; the last chunk of
 * the device always is (see table_build()).  Short runs gain
 * little from a segment of their own and every segment lengthens the
 * suspend of a reload.  A partial last chunk is cut at dev_len.  Returns 0
 * and a malloc'ed array in *out, or -ENOMEM.
 */
int table_build(const struct mapping *maps, size_t n, uint64_t dev_len, uint32_t chunk_sectors,
		const struct table_policy *pol, struct segment **out, size_t *nout,
		struct table_stats *st);

/* Is every sector of chunk @c (cut at dev_len) inside a linear segment? */
int table_chunk_linear(const struct segment *segs, size_t n, uint64_t c, uint32_t chunk_sectors);

#endif
