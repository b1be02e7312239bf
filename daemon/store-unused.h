/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Space a store's file holds for nothing (cowctl check, check --repair):
 * blocks allocated where the plugin's for_each_unused() says nothing is,
 * left by a cowd that stopped without giving them back (killed, or its
 * device still there).
 */
#ifndef COW_STORE_UNUSED_H
#define COW_STORE_UNUSED_H

#include <stdint.h>

#include "offline.h"

/*
 * Bytes of the store's file allocated where nothing is, in *@held (0 for
 * a store that is not a regular file, or whose format cannot say); with
 * @release, holes are punched there and *@left is what stays allocated.
 * 0, or a negative errno with the reason logged.
 */
int store_unused(struct offline_store *o, int release, uint64_t *held, uint64_t *left);

#endif
