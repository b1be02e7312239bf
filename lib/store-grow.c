// SPDX-License-Identifier: GPL-2.0-only
/*
 * Growing a store that appends (qcow2): a file is extended, its blocks
 * allocated; a loop device gets its backing file extended and its capacity
 * re-read, so the kernel sees the new size at once (it checks CoW
 * locations against the live size).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blkdev.h"
#include "cow-store.h"

#define GROW_STEP (32ULL << 20)

/* Extend the file @fd to @size bytes, with its blocks allocated. */
static int extend_to(int fd, uint64_t size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size >= size)
		return 0;
	if (fallocate(fd, 0, st.st_size, (off_t)(size - (uint64_t)st.st_size)) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	/* A filesystem without fallocate: a sparse extension. */
	return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

/*
 * Extend the file @fd to @want bytes, or to @need when the filesystem has
 * no room for the whole step.  The blocks are allocated: a full host
 * filesystem fails here, in locate(), and not in a later write through a
 * loop device in the middle of the kernel's copy.
 */
static int extend_file(int fd, uint64_t need, uint64_t want)
{
	int r = extend_to(fd, want);

	return r == -ENOSPC && need < want ? extend_to(fd, need) : r;
}

int store_grow(struct cow_store *s, uint64_t need)
{
	char backing[4096];
	uint64_t want, size;
	struct stat st;
	int fd, r;

	if (s->cow_size >= need)
		return 0;
	if (s->read_only)
		return cow_store_error(s, -EROFS, "the store is open read-only");
	/* Grow in steps: one resize per many allocations. */
	want = (need + s->cow_size / 8 + GROW_STEP - 1) / GROW_STEP * GROW_STEP;
	if (s->cow_is_file) {
		r = extend_file(s->cow_fd, need, want);
		if (r)
			return cow_store_error(s, r, "cannot extend the store to %llu bytes: %s",
					       (unsigned long long)need, strerror(-r));
		return fd_size(s->cow_fd, &s->cow_size, NULL);
	}
	if (fstat(s->cow_fd, &st) < 0 || !S_ISBLK(st.st_mode) ||
	    loop_backing_file(major(st.st_rdev), minor(st.st_rdev), backing, sizeof(backing)))
		return cow_store_error(s, -ENOSPC,
				       "the CoW device is full (%llu bytes) and is not a loop device over a file that could grow",
				       (unsigned long long)s->cow_size);
	fd = open(backing, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cow_store_error(s, -errno, "cannot open %s to extend it: %s", backing,
				       strerror(errno));
	r = extend_file(fd, need, want);
	close(fd);
	if (r)
		return cow_store_error(s, r, "cannot extend %s to %llu bytes: %s", backing,
				       (unsigned long long)need, strerror(-r));
	if (ioctl(s->cow_fd, LOOP_SET_CAPACITY, 0) < 0 || fd_size(s->cow_fd, &size, NULL) ||
	    size < need)
		return cow_store_error(s, -EIO, "the loop device over %s did not grow", backing);
	s->cow_size = size;
	return 0;
}
