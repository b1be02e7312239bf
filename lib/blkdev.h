/* SPDX-License-Identifier: GPL-2.0-only */
/* Finding block devices: inside libdmcow-store, and for cowd and cowctl. */
#ifndef COW_BLKDEV_H
#define COW_BLKDEV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cow-store.h"	/* fd_size() */

/* Open the block device MAJ:MIN; its path goes to @path. */
int open_devt(unsigned int major, unsigned int minor, int flags, char *path, size_t len);

/* The first line of a sysfs file, without its newline.  0 or a negative errno. */
int read_sysfs_line(const char *path, char *buf, size_t len);

/*
 * The file behind loop device MAJ:MIN, if it is one (0), else -ENOENT.
 */
int loop_backing_file(unsigned int major, unsigned int minor, char *path, size_t len);

#endif
