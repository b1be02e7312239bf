/* SPDX-License-Identifier: GPL-2.0-only */
/* The few libdevmapper operations cowctl (and cowd) need. */
#ifndef COW_DMDEV_H
#define COW_DMDEV_H

#include <stddef.h>
#include <stdint.h>

int dmdev_exists(const char *name);
/* Create and resume NAME with one target (read-only when @read_only). */
int dmdev_create(const char *name, uint64_t sectors, const char *target, const char *params,
		 int read_only);
/* How many openers NAME has (mounts included), or a negative errno;
 * *read_only says whether it is a read-only device. */
int dmdev_info(const char *name, int *read_only);
int dmdev_remove(const char *name);
/* The length of NAME's live table, in sectors (0: none). */
int dmdev_sectors(const char *name, uint64_t *sectors);
/*
 * The size of the device MAJOR:MINOR in sectors: its live table's length,
 * or its inactive table's while it has no live one (cowd resumes it).
 */
int dmdev_sectors_devt(unsigned int major, unsigned int minor, uint64_t *sectors);
/* "dmsetup message NAME 0 MESSAGE". */
int dmdev_message(const char *name, const char *message);
/* Params of the first target of type @target in the STATUS or TABLE of NAME. */
int dmdev_target_params(const char *name, int table, const char *target, char *params,
			size_t len);
/* Call @fn for every dm device that has a target of type @target. */
int dmdev_list(const char *target, void (*fn)(const char *name, void *ctx), void *ctx);

#endif
