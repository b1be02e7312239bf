// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "reload.h"

int dm_table_info(unsigned int major, unsigned int minor, uint64_t *len, char *cow_params,
		  size_t plen)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_TABLE);
	uint64_t start, length;
	char *type, *params;
	void *next = NULL;
	int found = 0;

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_major(dmt, (int)major) || !dm_task_set_minor(dmt, (int)minor) ||
	    !dm_task_run(dmt)) {
		dm_task_destroy(dmt);
		return -ENODEV;
	}
	*len = 0;
	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
		if (!type)
			break;
		*len = start + length;
		if (!found && !strcmp(type, "cow")) {
			snprintf(cow_params, plen, "%s", params);
			found = 1;
		}
	} while (next);
	dm_task_destroy(dmt);
	return found ? 0 : -ENOENT;
}

/*
 * The safe way to bring a device up over a store that may hold data is
 * "dmsetup create NAME --notable; dmsetup load NAME --table ...; cowd
 * IDENT": until cowd has handed the store's mappings to the kernel nobody
 * can read the device, so nobody can read the base's bytes where the store
 * has others.  cowd then resumes the loaded table.  Returns 1 if it did, 0
 * if the device was live already, or a negative errno.
 */
int dm_resume_loaded(unsigned int major, unsigned int minor)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_INFO);
	struct dm_info info;
	uint32_t cookie = 0;
	char name[128];	/* DM_NAME_LEN */
	int r;

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_major(dmt, (int)major) || !dm_task_set_minor(dmt, (int)minor) ||
	    !dm_task_run(dmt) || !dm_task_get_info(dmt, &info) || !info.exists) {
		dm_task_destroy(dmt);
		return -ENODEV;
	}
	snprintf(name, sizeof(name), "%s", dm_task_get_name(dmt));
	dm_task_destroy(dmt);
	if (info.live_table || !info.inactive_table)
		return 0;
	/* By name, so that libdevmapper makes /dev/mapper/NAME as dmsetup does. */
	dmt = dm_task_create(DM_DEVICE_RESUME);
	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_name(dmt, name) || !dm_task_set_cookie(dmt, &cookie, 0)) {
		dm_task_destroy(dmt);
		return -ENOMEM;
	}
	r = dm_task_run(dmt) ? 1 : -EIO;
	dm_udev_wait(cookie);
	dm_task_destroy(dmt);
	return r;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int task_for(struct dm_task **dmt, int type, const struct reload_job *job)
{
	*dmt = dm_task_create(type);
	if (!*dmt)
		return -ENOMEM;
	if (!dm_task_set_major(*dmt, (int)job->dm_major) ||
	    !dm_task_set_minor(*dmt, (int)job->dm_minor)) {
		dm_task_destroy(*dmt);
		return -EINVAL;
	}
	return 0;
}

/*
 * Is the device read-only (cowctl create --read-only: it must stay so),
 * and has someone loaded a table that is not live yet?
 */
static void device_state(const struct reload_job *job, int *ro, int *inactive)
{
	struct dm_task *dmt;
	struct dm_info info;

	*ro = *inactive = 0;
	if (task_for(&dmt, DM_DEVICE_INFO, job))
		return;
	if (dm_task_run(dmt) && dm_task_get_info(dmt, &info) && info.exists) {
		*ro = info.read_only;
		*inactive = info.inactive_table;
	}
	dm_task_destroy(dmt);
}

static void run_job(struct reload_job *job)
{
	struct dm_task *dmt;
	char params[600];
	uint32_t cookie = 0;
	double t0;
	size_t i;
	int ro, inactive;

	/*
	 * A table someone else loaded (dmsetup remove --force loads an
	 * error table, then resumes it) must not be replaced by ours, which
	 * their resume would then make live.  The check and our load are
	 * two ioctls: device-mapper has no compare-and-swap for tables.
	 */
	device_state(job, &ro, &inactive);
	if (inactive) {
		snprintf(job->why, sizeof(job->why), "another table is loaded, not live yet");
		job->error = -EBUSY;
		return;
	}
	if ((job->error = task_for(&dmt, DM_DEVICE_RELOAD, job)))
		return;
	if (ro && !dm_task_set_ro(dmt)) {
		dm_task_destroy(dmt);
		job->error = -ENOMEM;
		return;
	}
	for (i = 0; i < job->nsegs; i++) {
		const struct segment *s = &job->segs[i];

		if (s->linear)
			snprintf(params, sizeof(params), "%s %llu", job->cow_dev,
				 (unsigned long long)s->cow_sector);
		else
			snprintf(params, sizeof(params), "%s", job->cow_params);
		if (!dm_task_add_target(dmt, s->start, s->len, s->linear ? "linear" : "cow", params)) {
			snprintf(job->why, sizeof(job->why), "cannot add segment %zu", i);
			job->error = -ENOMEM;
			dm_task_destroy(dmt);
			return;
		}
	}
	if (!dm_task_run(dmt)) {
		snprintf(job->why, sizeof(job->why), "the kernel refused the new table (see dmesg)");
		job->error = -EINVAL;
		dm_task_destroy(dmt);
		return;
	}
	dm_task_destroy(dmt);

	/*
	 * Suspend (no filesystem freeze: the mapping does not change), swap,
	 * resume.  With a udev cookie, as lvm and dmsetup resume: udev's dm
	 * rules skip a resume without one, and drop /dev/mapper/NAME.  The
	 * wait for udev is after the device is live again.
	 */
	if ((job->error = task_for(&dmt, DM_DEVICE_RESUME, job)))
		return;
	dm_task_skip_lockfs(dmt);
	if (!dm_task_set_cookie(dmt, &cookie, 0))
		cookie = 0;
	t0 = now_ms();
	if (!dm_task_run(dmt)) {
		snprintf(job->why, sizeof(job->why), "resuming with the new table failed");
		job->error = -EIO;
	}
	job->suspend_ms = now_ms() - t0;
	dm_task_destroy(dmt);
	if (cookie)
		dm_udev_wait(cookie);
	/* Our table, not live: gone, or every later reload would wait for it. */
	if (job->error && !task_for(&dmt, DM_DEVICE_CLEAR, job)) {
		(void)dm_task_run(dmt);
		dm_task_destroy(dmt);
	}
}

static void *reload_thread(void *arg)
{
	struct reloader *r = arg;

	run_job(r->job);
	ev_async_send(EV_DEFAULT, &r->done);
	return NULL;
}

int reload_start(struct reloader *r, struct reload_job *job)
{
	int err;

	if (r->running)
		return -EBUSY;
	r->job = job;
	job->error = 0;
	job->why[0] = 0;
	err = pthread_create(&r->thread, NULL, reload_thread, r);
	if (err)
		return -err;
	r->running = 1;
	return 0;
}

struct reload_job *reload_finish(struct reloader *r)
{
	if (!r->running)
		return NULL;
	pthread_join(r->thread, NULL);
	r->running = 0;
	return r->job;
}
