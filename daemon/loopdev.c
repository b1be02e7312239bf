// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "loopdev.h"

int loop_attach(const char *file, int read_only, char *dev, size_t len)
{
	struct loop_config cfg;
	int ctl, file_fd, loop_fd = -1, tries, r = -EBUSY;

	file_fd = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (file_fd < 0)
		return -errno;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		r = -errno;
		close(file_fd);
		return r;
	}
	/* Another process may take the free device first: try again. */
	for (tries = 0; tries < 16; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0) {
			r = -errno;
			break;
		}
		snprintf(dev, len, "/dev/loop%d", n);
		loop_fd = open(dev, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (loop_fd < 0) {
			r = -errno;
			if (errno == ENOENT) {
				usleep(10000); /* node not there yet */
				continue;
			}
			break;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (unsigned int)file_fd;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", file);
		if (ioctl(loop_fd, LOOP_CONFIGURE, &cfg) == 0) {
			r = loop_fd;
			break;
		}
		r = -errno;
		close(loop_fd);
		loop_fd = -1;
		if (r != -EBUSY)
			break;
	}
	close(ctl);
	close(file_fd);
	return r;
}
