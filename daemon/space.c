// SPDX-License-Identifier: GPL-2.0-only
/* The space behind a CoW device: see space.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blkdev.h"
#include "space.h"

int space_open(struct space *sp, int cow_fd)
{
	char sys[128], line[32], name[64];
	struct stat st;

	sp->fd = -1;
	sp->offset = 0;
	sp->path[0] = 0;
	if (fstat(cow_fd, &st) < 0)
		return -errno;
	if (!S_ISBLK(st.st_mode) ||
	    loop_backing_file(major(st.st_rdev), minor(st.st_rdev), sp->path, sizeof(sp->path)))
		return 0;	/* a disk or partition: its blocks exist */
	snprintf(name, sizeof(name), "%u:%u", major(st.st_rdev), minor(st.st_rdev));
	snprintf(sys, sizeof(sys), "/sys/dev/block/%s/loop/offset", name);
	if (!read_sysfs_line(sys, line, sizeof(line)))
		sp->offset = strtoull(line, NULL, 10);
	sp->fd = open(sp->path, O_WRONLY | O_CLOEXEC);
	if (sp->fd < 0)
		return -errno;
	return 0;
}

int space_allocate(struct space *sp, uint64_t off, uint64_t len)
{
	if (sp->fd < 0)
		return 0;
	/* KEEP_SIZE: never change the size the loop device was set up with. */
	if (fallocate(sp->fd, FALLOC_FL_KEEP_SIZE, (off_t)(sp->offset + off), (off_t)len) == 0)
		return 0;
	if (errno == EOPNOTSUPP)
		return 0;	/* the filesystem cannot say in advance */
	return -errno;
}

uint64_t space_release(struct space *sp, uint64_t off, uint64_t len)
{
	if (sp->fd < 0 || fallocate(sp->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (off_t)(sp->offset + off), (off_t)len) < 0)
		return 0;
	return len;
}

void space_close(struct space *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
}
