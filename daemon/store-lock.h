/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One cowd per store.  Two groups can reach one store where the kernel
 * cannot tell (two loop devices over one file), and a daemon whose device
 * is gone still makes its last commit and gives space back: a second
 * daemon on the store meanwhile would allocate what the first still
 * writes.  cowd holds a lock on the store for as long as it runs.
 */
#ifndef COW_STORE_LOCK_H
#define COW_STORE_LOCK_H

#include <stddef.h>

/*
 * Lock the store open at @fd (the file behind a loop device, or the CoW
 * device itself), waiting up to @wait_ms for a daemon that is finishing.
 * The lock lasts as long as @fd's open file description.  0, or -EBUSY
 * when another daemon holds it (said in @why), or a negative errno.
 */
int store_lock(int fd, unsigned int wait_ms, char *why, size_t len);

#endif
