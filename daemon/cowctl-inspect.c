// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowctl info and map: what a store is and where its data lies, offline
 * (like qemu-img info and qemu-img map), through the store's plugin.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cowctl-inspect.h"
#include "cowctl-store.h"
#include "json-out.h"
#include "log.h"
#include "offline.h"
#include "cow-store.h"

static int count_mapping(void *ctx, uint64_t chunk, uint64_t sector)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

/* Bytes the store takes on its disk: allocated blocks of a file. */
static uint64_t disk_bytes(const struct offline_store *o)
{
	struct stat st;

	if (fstat(o->s.cow_fd, &st))
		return 0;
	return S_ISREG(st.st_mode) ? (uint64_t)st.st_blocks * 512 : o->s.cow_size;
}

int cmd_info(const struct cowctl_args *a)
{
	struct cow_store_info inf = { 0 };
	struct offline_store o;
	uint64_t mapped = 0, chunk_bytes;
	char format[64];
	int r;

	if (open_store_to_read(&o, a))
		return 1;
	if (offline_inspect(a->store, format, sizeof(format), &inf))
		inf.base_id[0] = 0;
	r = o.p->for_each_mapping(&o.s, count_mapping, &mapped);
	if (r) {
		log_err("%s: cannot list the mappings: %s", a->store, o.s.error);
		offline_close(&o);
		return 1;
	}
	chunk_bytes = (uint64_t)o.s.chunk_sectors * COW_SECTOR;
	if (a->json) {
		struct json_object *j = json_object_new_object();

		json_object_object_add(j, "store", json_object_new_string(a->store));
		json_object_object_add(j, "format", json_object_new_string(o.p->name));
		json_object_object_add(j, "base", json_object_new_string(o.base_path));
		json_object_object_add(j, "base_id", json_object_new_string(inf.base_id));
		json_add_u64(j, "virtual_bytes", o.dev_size);
		json_add_u64(j, "chunk_bytes", chunk_bytes);
		json_add_u64(j, "chunks", o.nr_chunks);
		json_add_u64(j, "chunks_mapped", mapped);
		json_add_u64(j, "mapped_bytes", mapped * chunk_bytes);
		json_add_u64(j, "store_bytes", o.s.cow_size);
		json_add_u64(j, "disk_bytes", disk_bytes(&o));
		json_out(j, JSON_OUTPUT_FLAGS | JSON_C_TO_STRING_PRETTY);
		json_object_put(j);
	} else {
		printf("store: %s\n"
		       "format: %s\n"
		       "base: %s%s%s%s\n"
		       "virtual size: %llu bytes (%s)\n"
		       "chunk size: %llu bytes\n"
		       "chunks mapped: %llu of %llu (%llu bytes)\n"
		       "store size: %llu bytes, %llu on disk\n",
		       a->store, o.p->name, o.base_path, inf.base_id[0] ? " (label " : "",
		       inf.base_id, inf.base_id[0] ? ")" : "",
		       (unsigned long long)o.dev_size,
		       o.dev_size > o.s.base_size ? "grown past the base, which reads as zeros" : "the base's",
		       (unsigned long long)chunk_bytes,
		       (unsigned long long)mapped, (unsigned long long)o.nr_chunks,
		       (unsigned long long)(mapped * chunk_bytes),
		       (unsigned long long)o.s.cow_size, (unsigned long long)disk_bytes(&o));
	}
	offline_close(&o);
	return 0;
}

/*
 * An extent of the device, in bytes: in the store at @offset, zeros, or
 * the base's (at the same offset).  Neighbours that continue each other
 * are one extent.
 */
enum where { IN_BASE, IN_STORE, ZEROS };

struct extent {
	uint64_t start, length, offset;
	enum where where;
};

struct map_out {
	int json;
	uint64_t n;		/* extents printed */
	uint64_t end;		/* the device's end, bytes */
	struct extent cur;	/* being grown; length 0: none */
};

static void print_extent(struct map_out *m, const struct extent *e)
{
	if (m->json) {
		printf("%s\n  {\"start\": %llu, \"length\": %llu, \"depth\": %d, \"present\": true, "
		       "\"zero\": %s, \"data\": %s",
		       m->n ? "," : "", (unsigned long long)e->start, (unsigned long long)e->length,
		       e->where == IN_BASE, e->where == ZEROS ? "true" : "false",
		       e->where == ZEROS ? "false" : "true");
		if (e->where != ZEROS)
			printf(", \"offset\": %llu", (unsigned long long)e->offset);
		printf("}");
	} else if (e->where != IN_BASE) {
		printf("%-20llu %-20llu ", (unsigned long long)e->start,
		       (unsigned long long)e->length);
		if (e->where == ZEROS)
			printf("zeros\n");
		else
			printf("%llu\n", (unsigned long long)e->offset);
	}
	m->n++;
}

/* Add the next extent (in ascending order, none skipped). */
static void add_extent(struct map_out *m, uint64_t start, uint64_t length, uint64_t offset,
		       enum where where)
{
	struct extent *c = &m->cur;

	if (c->length && c->where == where && c->start + c->length == start &&
	    (where == ZEROS || c->offset + c->length == offset)) {
		c->length += length;
		return;
	}
	if (c->length)
		print_extent(m, c);
	*c = (struct extent){ start, length, offset, where };
}

/* What the store holds from byte @start, for @length; the gap before from the base. */
static void add_held(struct map_out *m, uint64_t start, uint64_t length, uint64_t offset,
		     enum where where)
{
	uint64_t at = m->cur.length ? m->cur.start + m->cur.length : 0;

	if (start > at)
		add_extent(m, at, start - at, at, IN_BASE);
	add_extent(m, start, length, offset, where);
}

static int map_extent(void *ctx, uint64_t sector, uint64_t count, uint64_t cow_sector)
{
	add_held(ctx, sector * COW_SECTOR, count * COW_SECTOR, cow_sector * COW_SECTOR,
		 cow_sector == COW_EXTENT_ZERO ? ZEROS : IN_STORE);
	return 0;
}

struct mapping {
	uint64_t chunk, sector;
};

struct mappings {
	struct mapping *v;
	size_t n, cap;
};

static int collect_mapping(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct mappings *ms = ctx;

	if (ms->n == ms->cap) {
		size_t cap = ms->cap ? ms->cap * 2 : 1024;
		struct mapping *v = realloc(ms->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ms->v = v;
		ms->cap = cap;
	}
	ms->v[ms->n++] = (struct mapping){ chunk, sector };
	return 0;
}

static int by_chunk(const void *x, const void *y)
{
	const struct mapping *a = x, *b = y;

	return a->chunk < b->chunk ? -1 : a->chunk > b->chunk;
}

/* A plugin without for_each_extent holds whole chunks: sort its mappings. */
static int map_chunks(struct offline_store *o, struct map_out *m)
{
	uint64_t chunk_bytes = (uint64_t)o->s.chunk_sectors * COW_SECTOR;
	struct mappings ms = { 0 };
	size_t i;
	int r;

	r = o->p->for_each_mapping(&o->s, collect_mapping, &ms);
	if (!r) {
		qsort(ms.v, ms.n, sizeof(*ms.v), by_chunk);
		for (i = 0; i < ms.n; i++) {
			uint64_t start = ms.v[i].chunk * chunk_bytes;
			uint64_t len = chunk_bytes < m->end - start ? chunk_bytes : m->end - start;

			add_held(m, start, len, ms.v[i].sector * COW_SECTOR, IN_STORE);
		}
	}
	free(ms.v);
	return r;
}

int cmd_map(const struct cowctl_args *a)
{
	struct offline_store o;
	struct map_out m = { .json = a->json };
	int r;

	if (open_store_to_read(&o, a))
		return 1;
	m.end = o.dev_size;
	if (a->json) {
		json_out_begun = 1;
		printf("[");
	} else {
		printf("# %s: device bytes held by the store (the rest reads from the base %s)\n"
		       "# offset              length               store offset (bytes)\n",
		       a->store, o.base_path);
	}
	if (COW_PLUGIN_HAS(o.p, for_each_extent))
		r = o.p->for_each_extent(&o.s, map_extent, &m);
	else
		r = map_chunks(&o, &m);
	if (!r) {	/* the base's tail */
		uint64_t at = m.cur.length ? m.cur.start + m.cur.length : 0;

		if (at < m.end)
			add_extent(&m, at, m.end - at, at, IN_BASE);
	}
	if (m.cur.length)
		print_extent(&m, &m.cur);
	if (a->json)
		printf("\n]\n");
	if (r)
		log_err("%s: cannot list what the store holds: %s", a->store,
			r == -ENOMEM ? "out of memory" : o.s.error);
	offline_close(&o);
	return r ? 1 : 0;
}
