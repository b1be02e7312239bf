/* SPDX-License-Identifier: GPL-2.0-only */
/* cowctl's offline store commands: check, dump, merge. */
#ifndef COWCTL_STORE_H
#define COWCTL_STORE_H

#include "cowctl-args.h"

/* Exit codes of cowctl check (also in cowctl(8)). */
#define CHECK_EXIT_CLEAN 0
#define CHECK_EXIT_FAILED 1	/* could not check: missing base, I/O error */
#define CHECK_EXIT_CORRUPT 3
#define CHECK_EXIT_LEAKS 4	/* consistent, but space is leaked */

/* The flags offline_open() gets for @a's read-only commands. */
unsigned int offline_flags(const struct cowctl_args *a);
/* Offline commands must not race a cowd that serves the store: -EBUSY, said. */
int refuse_if_used(const char *path, const char *what);

struct offline_store;
/*
 * Open @a->store (and @a->base) to read it, as offline_open() with
 * offline_flags(@a), refused while a device uses it: 0, or a negative
 * errno, said, and nothing left open.
 */
int open_store_to_read(struct offline_store *o, const struct cowctl_args *a);

int cmd_check(const struct cowctl_args *a);
int cmd_dump(const struct cowctl_args *a);
int cmd_merge(const struct cowctl_args *a);

#endif
