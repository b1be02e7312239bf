/* SPDX-License-Identifier: GPL-2.0-only */
/* Attaching regular files to loop devices. */
#ifndef COW_LOOPDEV_H
#define COW_LOOPDEV_H

#include <stddef.h>

/*
 * Attach @file to a free loop device (read-only if @read_only), with
 * autoclear: the loop device goes away when its last user closes it.
 * Returns an fd open on the loop device (keep it until another user, such
 * as a dm table, holds the device) and its path in @dev, or a negative errno.
 */
int loop_attach(const char *file, int read_only, char *dev, size_t len);

#endif
