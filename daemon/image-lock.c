// SPDX-License-Identifier: GPL-2.0-only
/*
 * QEMU's image locks (block/file-posix.c: raw_apply_lock_bytes() and
 * raw_check_lock_bytes()): open file description (OFD) read locks of one
 * byte, at 100 + P for "I hold permission P" and at 200 + P for "I do not
 * let others have P".  P: 0 consistent read, 1 write, 2 write unchanged,
 * 3 resize.  A process that wants P fails if someone locks 200 + P; one
 * that will not share P fails if someone locks 100 + P.  QEMU tests with
 * F_OFD_GETLK for a write lock, which any read lock of another open file
 * description conflicts with.
 *
 * cowd writes the image and shares only reads, like a running VM: QEMU and
 * qemu-io then refuse to open it for writing, qemu-img refuses it without
 * -U (--force-share), and cowd refuses an image one of them holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image-lock.h"

#define PERM_BASE 100
#define SHARED_BASE 200

enum { PERM_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE };

static const char *const perm_names[] = { "consistent read", "write", "write unchanged",
					  "resize" };

/* Does another open file description hold a lock on byte @off? */
static int byte_locked(int fd, off_t off)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };

	if (fcntl(fd, F_OFD_GETLK, &fl))
		return -errno;
	return fl.l_type != F_UNLCK;
}

static int lock_byte(int fd, off_t off)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };

	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

int image_lock(const char *path, char *why, size_t len)
{
	static const int take[] = { PERM_READ, PERM_WRITE };
	static const int unshare[] = { PERM_WRITE, PERM_RESIZE };
	size_t i;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	/* Locked first, then tested, as QEMU does: two that race both fail. */
	for (i = 0; i < sizeof(take) / sizeof(take[0]); i++) {
		r = lock_byte(fd, PERM_BASE + take[i]);
		if (r)
			goto fail_lock;
	}
	for (i = 0; i < sizeof(unshare) / sizeof(unshare[0]); i++) {
		r = lock_byte(fd, SHARED_BASE + unshare[i]);
		if (r)
			goto fail_lock;
	}
	for (i = 0; i < sizeof(take) / sizeof(take[0]); i++) {
		r = byte_locked(fd, SHARED_BASE + take[i]);
		if (r < 0)
			goto fail_lock;
		if (r) {
			snprintf(why, len, "another process (QEMU?) does not share \"%s\" on it",
				 perm_names[take[i]]);
			goto fail;
		}
	}
	for (i = 0; i < sizeof(unshare) / sizeof(unshare[0]); i++) {
		r = byte_locked(fd, PERM_BASE + unshare[i]);
		if (r < 0)
			goto fail_lock;
		if (r) {
			snprintf(why, len, "another process (QEMU?) holds \"%s\" on it",
				 perm_names[unshare[i]]);
			goto fail;
		}
	}
	return fd;

fail_lock:
	snprintf(why, len, "cannot lock %s: %s", path, strerror(-r));
fail:
	close(fd);
	return r < 0 ? r : -EBUSY;
}
