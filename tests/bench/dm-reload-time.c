// SPDX-License-Identifier: GPL-2.0-only
/*
 * The suspend window of a table reload, as cowd measures its own: load
 * the device's live table again and time the resume ioctl that suspends
 * the device (no filesystem freeze), swaps the tables and resumes it.
 * On a dm-linear device this is what device-mapper itself costs, the
 * floor under dm-cow's reloads on the same machine and load.
 *
 *   dm-reload-time NAME
 *
 * Prints the window in milliseconds.
 */
#include <libdevmapper.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* A new task for the device @name, or exit. */
static struct dm_task *task(int type, const char *name)
{
	struct dm_task *dmt = dm_task_create(type);

	if (!dmt || !dm_task_set_name(dmt, name)) {
		fprintf(stderr, "dm-reload-time: out of memory\n");
		exit(1);
	}
	return dmt;
}

int main(int argc, char **argv)
{
	struct dm_task *live, *reload, *resume;
	uint64_t start, length;
	char *type, *params;
	void *next = NULL;
	double t0, t1;

	if (argc != 2) {
		fprintf(stderr, "usage: dm-reload-time NAME\n");
		return 2;
	}
	live = task(DM_DEVICE_TABLE, argv[1]);
	if (!dm_task_run(live)) {
		fprintf(stderr, "dm-reload-time: no device %s\n", argv[1]);
		return 1;
	}
	reload = task(DM_DEVICE_RELOAD, argv[1]);
	do {
		next = dm_get_next_target(live, next, &start, &length, &type, &params);
		if (type && !dm_task_add_target(reload, start, length, type, params)) {
			fprintf(stderr, "dm-reload-time: out of memory\n");
			return 1;
		}
	} while (next);
	if (!dm_task_run(reload)) {
		fprintf(stderr, "dm-reload-time: %s refused its own table\n", argv[1]);
		return 1;
	}
	resume = task(DM_DEVICE_RESUME, argv[1]);
	dm_task_skip_lockfs(resume);
	t0 = now_ms();
	if (!dm_task_run(resume)) {
		fprintf(stderr, "dm-reload-time: resuming %s failed\n", argv[1]);
		return 1;
	}
	t1 = now_ms();
	printf("%.1f\n", t1 - t0);
	dm_task_destroy(live);
	dm_task_destroy(reload);
	dm_task_destroy(resume);
	return 0;
}
