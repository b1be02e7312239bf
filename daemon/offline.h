/* SPDX-License-Identifier: GPL-2.0-only */
/* Opening a store with no device table: for cowctl check, dump and merge. */
#ifndef COW_OFFLINE_H
#define COW_OFFLINE_H

#include <limits.h>

#include "plugin-loader.h"

#define OFFLINE_DEFAULT_CHUNK_SECTORS 128 /* for formats that record none */

struct offline_store {
	struct plugin_set set;
	struct cow_store s;
	const struct cow_plugin *p;
	char base_path[PATH_MAX];
	char named_base[PATH_MAX];	/* the base the header names; "" if none */
	char error[512];
	uint64_t nr_chunks;	/* chunks of the device */
	uint64_t dev_size;	/* the device's size: the base's, or more if the store grew */
};

#define OFFLINE_READ_ONLY 1		/* nothing is written */
#define OFFLINE_IGNORE_BASE_MTIME 2	/* see cow_store.ignore_base_mtime */

/*
 * Open the store at @store_path with its plugin.  The base is @base_path,
 * or the one the store's header names (a relative name is taken from the
 * store's directory).  @flags: OFFLINE_*.  @base_id: the base's label the
 * store must have recorded, or NULL.  0, or a negative errno and o->error
 * says why; offline_close() either way.
 */
int offline_open(struct offline_store *o, const char *store_path, const char *base_path,
		 unsigned int flags, const char *base_id);
void offline_close(struct offline_store *o);

/*
 * What the header of the store at @path says (format name to @format),
 * without opening it.  0, -ENOENT for a blank store, or a negative errno.
 */
int offline_inspect(const char *path, char *format, size_t len, struct cow_store_info *info);

/* Is any device (a loop device, or a holder like device-mapper) using @path?
 * Writes what uses it to @who. */
int path_in_use(const char *path, char *who, size_t len);

#endif
