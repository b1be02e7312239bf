// SPDX-License-Identifier: GPL-2.0-only
/* One cowd per store: see store-lock.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store-lock.h"

/*
 * An OFD write lock on one byte far past any data: QEMU's image locks
 * (bytes 100 to 300 of a qcow2 image) never meet it, and it does not
 * depend on the store's size.
 */
#define STORE_LOCK_BYTE (1LL << 62)

int store_lock(int fd, unsigned int wait_ms, char *why, size_t len)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = STORE_LOCK_BYTE, .l_len = 1 };
	const struct timespec step = { 0, 50 * 1000 * 1000 };
	unsigned int waited;

	for (waited = 0;; waited += 50) {
		if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
			return 0;
		if (errno != EAGAIN && errno != EACCES) {
			snprintf(why, len, "cannot lock the store: %s", strerror(errno));
			return -errno;
		}
		if (waited >= wait_ms)
			break;
		nanosleep(&step, NULL);
	}
	snprintf(why, len, "another cowd serves this store (through another device, or finishing "
		 "with a device that is gone); one store serves one device");
	return -EBUSY;
}
