// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dmdev.h"

static int run_task(struct dm_task *dmt, int udev_sync)
{
	uint32_t cookie = 0;
	int ok;

	if (udev_sync && !dm_task_set_cookie(dmt, &cookie, 0)) {
		dm_task_destroy(dmt);
		return -EIO;
	}
	ok = dm_task_run(dmt);
	if (udev_sync)
		dm_udev_wait(cookie);
	dm_task_destroy(dmt);
	return ok ? 0 : -EIO;
}

int dmdev_exists(const char *name)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_INFO);
	struct dm_info info;
	int exists = 0;

	if (!dmt)
		return 0;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt) && dm_task_get_info(dmt, &info))
		exists = info.exists;
	dm_task_destroy(dmt);
	return exists;
}

int dmdev_info(const char *name, int *read_only)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_INFO);
	struct dm_info info;
	int r = -ENODEV;

	if (!dmt)
		return -ENOMEM;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt) && dm_task_get_info(dmt, &info) &&
	    info.exists) {
		r = info.open_count;
		*read_only = info.read_only;
	}
	dm_task_destroy(dmt);
	return r;
}

/*
 * Create NAME with its table loaded but not resumed: cowd resumes it once
 * the store's mappings are in the kernel, so that nobody ever reads the
 * base's bytes for a chunk the store has changed.  On error nothing is left.
 */
int dmdev_create(const char *name, uint64_t sectors, const char *target, const char *params,
		 int read_only)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_CREATE);
	int r;

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_name(dmt, name) || (read_only && !dm_task_set_ro(dmt))) {
		dm_task_destroy(dmt);
		return -EINVAL;
	}
	/*
	 * No udev cookie: a device without a table gets no uevent that
	 * carries one, and libdevmapper would wait for udev forever.  udev
	 * makes /dev/mapper/NAME at the resume (cowd's, with a cookie).
	 */
	r = run_task(dmt, 0);
	if (r)
		return r;
	dmt = dm_task_create(DM_DEVICE_RELOAD);
	if (!dmt) {
		dmdev_remove(name);
		return -ENOMEM;
	}
	if (!dm_task_set_name(dmt, name) || (read_only && !dm_task_set_ro(dmt)) ||
	    !dm_task_add_target(dmt, 0, sectors, target, params)) {
		dm_task_destroy(dmt);
		dmdev_remove(name);
		return -EINVAL;
	}
	r = run_task(dmt, 0);
	if (r)
		dmdev_remove(name);
	return r;
}

int dmdev_remove(const char *name)
{
	int tries, r = -EIO;

	/* udev or blkid may hold the device for a moment after a close. */
	for (tries = 0; tries < 20; tries++) {
		struct dm_task *dmt = dm_task_create(DM_DEVICE_REMOVE);

		if (!dmt)
			return -ENOMEM;
		if (!dm_task_set_name(dmt, name)) {
			dm_task_destroy(dmt);
			return -EINVAL;
		}
		if (tries == 0)
			dm_task_retry_remove(dmt);
		r = run_task(dmt, 1);
		if (!r || !dmdev_exists(name))
			return 0;
		usleep(100000);
	}
	return r;
}

int dmdev_target_params(const char *name, int table, const char *target, char *params,
			size_t len)
{
	struct dm_task *dmt = dm_task_create(table ? DM_DEVICE_TABLE : DM_DEVICE_STATUS);
	uint64_t start, length;
	char *type, *p;
	void *next = NULL;
	int r = -ENOENT;

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt)) {
		dm_task_destroy(dmt);
		return -ENODEV;
	}
	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type, &p);
		if (type && !strcmp(type, target)) {
			snprintf(params, len, "%s", p ? p : "");
			r = 0;
			break;
		}
	} while (next);
	dm_task_destroy(dmt);
	return r;
}

int dmdev_list(const char *target, void (*fn)(const char *name, void *ctx), void *ctx)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_LIST);
	struct dm_names *names;
	unsigned int next = 0;
	char params[512];

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_run(dmt) || !(names = dm_task_get_names(dmt))) {
		dm_task_destroy(dmt);
		return -EIO;
	}
	if (names->dev) {
		do {
			names = (struct dm_names *)((char *)names + next);
			if (!dmdev_target_params(names->name, 1, target, params, sizeof(params)))
				fn(names->name, ctx);
			next = names->next;
		} while (next);
	}
	dm_task_destroy(dmt);
	return 0;
}

/*
 * A DM_DEVICE_TABLE task run for NAME, or for MAJOR:MINOR when NAME is
 * NULL, on its inactive table if asked; NULL if it failed.
 */
static struct dm_task *table_task(const char *name, unsigned int major, unsigned int minor,
				  int inactive)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_TABLE);

	if (!dmt)
		return NULL;
	if ((name ? !dm_task_set_name(dmt, name) :
		    !dm_task_set_major(dmt, (int)major) || !dm_task_set_minor(dmt, (int)minor)) ||
	    (inactive && !dm_task_query_inactive_table(dmt)) || !dm_task_run(dmt)) {
		dm_task_destroy(dmt);
		return NULL;
	}
	return dmt;
}

/* The length of the table @dmt read, in sectors; it is destroyed. */
static uint64_t table_length(struct dm_task *dmt)
{
	uint64_t start, length, end = 0;
	char *type, *params;
	void *next = NULL;

	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
		if (type)
			end = start + length;
	} while (type && next);
	dm_task_destroy(dmt);
	return end;
}

int dmdev_sectors(const char *name, uint64_t *sectors)
{
	struct dm_task *dmt = table_task(name, 0, 0, 0);

	if (!dmt)
		return -ENODEV;
	*sectors = table_length(dmt);
	return 0;
}

int dmdev_sectors_devt(unsigned int major, unsigned int minor, uint64_t *sectors)
{
	int inactive;

	for (inactive = 0; inactive < 2; inactive++) {
		struct dm_task *dmt = table_task(NULL, major, minor, inactive);

		if (!dmt)
			return -ENODEV;
		*sectors = table_length(dmt);
		if (*sectors)
			return 0;
	}
	return -ENOENT;
}

int dmdev_message(const char *name, const char *message)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_TARGET_MSG);

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_name(dmt, name) || !dm_task_set_sector(dmt, 0) ||
	    !dm_task_set_message(dmt, message)) {
		dm_task_destroy(dmt);
		return -ENOMEM;
	}
	return run_task(dmt, 0);
}
