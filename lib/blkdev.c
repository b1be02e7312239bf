// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blkdev.h"

int fd_size(int fd, uint64_t *bytes, int *is_file)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
		if (is_file)
			*is_file = 1;
		return 0;
	}
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	if (ioctl(fd, BLKGETSIZE64, bytes) < 0)
		return -errno;
	if (is_file)
		*is_file = 0;
	return 0;
}

int read_sysfs_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

/* The kernel's name for MAJ:MIN (e.g. "loop0", "vda"), from sysfs. */
static int devt_name(unsigned int major, unsigned int minor, char *name, size_t len)
{
	char path[128], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", major, minor);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "DEVNAME=", 8)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(name, len, "%s", line + 8);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -ENOENT;
}

int open_devt(unsigned int major, unsigned int minor, int flags, char *path, size_t len)
{
	char name[128];
	struct stat st;
	int fd, r;

	r = devt_name(major, minor, name, sizeof(name));
	if (r)
		return r;
	snprintf(path, len, "/dev/%s", name);
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode) &&
	    st.st_rdev == makedev(major, minor)) {
		fd = open(path, flags | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	/* No usable node in /dev: make a private one. */
	snprintf(path, len, "/run/dm-cow/%u:%u", major, minor);
	mkdir("/run/dm-cow", 0700);
	unlink(path);
	if (mknod(path, S_IFBLK | 0600, makedev(major, minor)) < 0)
		return -errno;
	fd = open(path, flags | O_CLOEXEC);
	r = fd < 0 ? -errno : fd;
	unlink(path);
	return r;
}

int loop_backing_file(unsigned int major, unsigned int minor, char *path, size_t len)
{
	char name[128], sys[256];

	if (devt_name(major, minor, name, sizeof(name)) || strncmp(name, "loop", 4))
		return -ENOENT;
	snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", name);
	return read_sysfs_line(sys, path, len);
}
