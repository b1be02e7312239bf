/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The space behind a CoW device.  A loop device over a sparse file takes
 * host blocks only when written: a full host filesystem would turn a first
 * write into a loop I/O error in the middle of the kernel's copy.  cowd
 * allocates a chunk's blocks in that file before it answers MAP, so the
 * first write fails cleanly (ENOSPC) instead.
 */
#ifndef COW_SPACE_H
#define COW_SPACE_H

#include <stdint.h>

struct space {
	int fd;			/* the loop device's backing file; -1: none */
	uint64_t offset;	/* the loop device's offset into it */
	char path[4096];
};

/* Find the file behind @cow_fd (a loop device); none is not an error. */
int space_open(struct space *sp, int cow_fd);
/* Allocate [off, off + len) of the CoW device: 0, -ENOSPC or -errno. */
int space_allocate(struct space *sp, uint64_t off, uint64_t len);
/*
 * Give [off, off + len) of the CoW device back to the host (a hole in the
 * file; reads as zeros): only what nothing will read.  The bytes given
 * back; 0 with no file behind, or if the filesystem cannot punch holes.
 */
uint64_t space_release(struct space *sp, uint64_t off, uint64_t len);
void space_close(struct space *sp);

#endif
