// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowd's QEMU image locks: a second holder is refused, whoever it is (a
 * second cowd, or a QEMU reader or writer that locks the bytes QEMU locks),
 * and the image is free again once the holder's fd is closed.  That QEMU
 * itself agrees is shown by t-qcow2 (qemu-io and qemu-img against cowd).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "image-lock.h"

/* Lock byte @off as QEMU does (an OFD read lock) on a new open of @path. */
static int qemu_lock(const char *path, off_t off)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };
	int fd = open(path, O_RDONLY);

	if (fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl)) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(void)
{
	char path[] = "/tmp/test-image-lock.XXXXXX", why[300];
	int fd, fd2, q;

	fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);

	TEST("a second holder is refused; the image is free once the first closes");
	fd = image_lock(path, why, sizeof(why));
	CHECK(fd >= 0, "first lock: %s", why);
	fd2 = image_lock(path, why, sizeof(why));
	CHECK(fd2 == -EBUSY && strstr(why, "write"), "second lock: %d (%s)", fd2, why);
	close(fd);
	fd2 = image_lock(path, why, sizeof(why));
	CHECK(fd2 >= 0, "lock after the first holder closed: %s", why);
	close(fd2);

	TEST("what QEMU holds: a writer (byte 101), a reader that keeps writes out (201)");
	q = qemu_lock(path, 101);
	fd = image_lock(path, why, sizeof(why));
	CHECK(q >= 0 && fd == -EBUSY && strstr(why, "holds \"write\""), "QEMU writing: %d (%s)", fd,
	      why);
	close(q);
	q = qemu_lock(path, 201);
	fd = image_lock(path, why, sizeof(why));
	CHECK(q >= 0 && fd == -EBUSY && strstr(why, "does not share \"write\""),
	      "QEMU reading without sharing writes: %d (%s)", fd, why);
	close(q);
	q = qemu_lock(path, 100);	/* qemu-img info -U: a reader that shares all */
	fd = image_lock(path, why, sizeof(why));
	CHECK(q >= 0 && fd >= 0, "a reader that shares writes: %s", why);
	close(fd);
	close(q);

	TEST("a missing image");
	fd = image_lock("/nonexistent/x.qcow2", why, sizeof(why));
	CHECK(fd == -ENOENT && strstr(why, "cannot open"), "%d (%s)", fd, why);

	unlink(path);
	return check_done("test-image-lock");
}
