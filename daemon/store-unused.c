// SPDX-License-Identifier: GPL-2.0-only
/* Space a store's file holds for nothing: see store-unused.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store-unused.h"

struct scan {
	int fd, release, error;
	uint64_t held, left;
};

/*
 * Allocated bytes of [start, end) of @fd, from its extent map: blocks
 * allocated ahead (fallocate) count too, which SEEK_DATA would skip.
 */
static uint64_t allocated(int fd, uint64_t start, uint64_t end)
{
	enum { N = 64 };
	char buf[sizeof(struct fiemap) + N * sizeof(struct fiemap_extent)];
	struct fiemap *fm = (struct fiemap *)buf;
	uint64_t n = 0, at = start, a, b;
	unsigned int i;

	while (at < end) {
		memset(buf, 0, sizeof(buf));
		fm->fm_start = at;
		fm->fm_length = end - at;
		fm->fm_extent_count = N;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0 || !fm->fm_mapped_extents)
			break;
		for (i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *e = &fm->fm_extents[i];

			a = e->fe_logical > at ? e->fe_logical : at;
			b = e->fe_logical + e->fe_length < end ? e->fe_logical + e->fe_length : end;
			if (b > a)
				n += b - a;
			at = e->fe_logical + e->fe_length;
		}
		if (fm->fm_extents[fm->fm_mapped_extents - 1].fe_flags & FIEMAP_EXTENT_LAST)
			break;
	}
	return n;
}

static int scan_run(void *ctx, uint64_t sector, uint64_t count)
{
	struct scan *u = ctx;
	uint64_t start = sector * COW_SECTOR, end = (sector + count) * COW_SECTOR;
	uint64_t held = allocated(u->fd, start, end);

	u->held += held;
	if (!u->release || !held)
		return 0;
	if (fallocate(u->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)start,
		      (off_t)(end - start)) < 0 && errno != EOPNOTSUPP) {
		u->error = -errno;
		return u->error;
	}
	u->left += allocated(u->fd, start, end);
	return 0;
}

int store_unused(struct offline_store *o, int release, uint64_t *held, uint64_t *left)
{
	struct scan u = { .fd = o->s.cow_fd, .release = release };
	struct stat st;
	int r;

	*held = *left = 0;
	if (!COW_PLUGIN_HAS(o->p, for_each_unused) || fstat(o->s.cow_fd, &st) < 0 ||
	    !S_ISREG(st.st_mode))
		return 0;
	r = o->p->for_each_unused(&o->s, scan_run, &u);
	if (u.error) {
		log_err("cannot give space back: %s", strerror(-u.error));
		return u.error;
	}
	if (r) {
		log_err("cannot tell which space the store holds for nothing: %s",
			o->s.error[0] ? o->s.error : strerror(-r));
		return r;
	}
	*held = u.held;
	*left = u.left;
	return 0;
}
