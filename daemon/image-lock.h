/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU's image locks, so that cowd and QEMU never write one qcow2 image at
 * once: see image-lock.c.
 */
#ifndef COW_IMAGE_LOCK_H
#define COW_IMAGE_LOCK_H

#include <stddef.h>

/*
 * Open @path and take the locks of a QEMU that writes it and shares only
 * reads (what a running VM holds).  Returns the fd that holds them (keep it
 * open; closing it or exiting drops them), or a negative errno: -EBUSY if
 * another process (QEMU, qemu-img, another cowd) holds the image in a way
 * that conflicts, with what it holds in @why.
 */
int image_lock(const char *path, char *why, size_t len);

#endif
