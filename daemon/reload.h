/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Table reloads, run on their own thread: loading and resuming a table
 * suspends the device, and a suspend waits for bios that may be waiting for
 * this daemon, so the thread that suspends must not be the one that
 * answers faults.  The event loop hands a job over and is woken when done.
 */
#ifndef COW_RELOAD_H
#define COW_RELOAD_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "table.h"

struct reload_job {
	/* in */
	unsigned int dm_major, dm_minor;
	char cow_params[512];	/* params of the group's cow targets */
	char cow_dev[32];	/* MAJ:MIN of the CoW device, for linear */
	struct segment *segs;
	size_t nsegs;
	int resize;		/* the table of a new size (cowd's, not the thread's) */
	/* out */
	int error;
	char why[256];
	double suspend_ms;	/* time the device was suspended */
};

struct reloader {
	pthread_t thread;
	int running;
	ev_async done;		/* signalled on the loop when a job ends */
	struct reload_job *job;
};

/* The dm device's current length and its first cow target's params. */
int dm_table_info(unsigned int major, unsigned int minor, uint64_t *len, char *cow_params,
		  size_t plen);

/* Start @job on the reload thread; returns -EBUSY if one is running. */
int dm_resume_loaded(unsigned int major, unsigned int minor);
int reload_start(struct reloader *r, struct reload_job *job);
/* After r->done fired: join the thread and take the finished job. */
struct reload_job *reload_finish(struct reloader *r);

#endif
