/* SPDX-License-Identifier: GPL-2.0-only */
/* cowd's state and event loop. */
#ifndef COW_SERVER_H
#define COW_SERVER_H

#include <ev.h>
#include <stdint.h>

#include "cow-plugin.h"
#include "plugin-loader.h"
#include "proto.h"
#include "reload.h"
#include "space.h"
#include "table.h"

struct cowd {
	/* options */
	const char *ident;
	const char *format;	/* for a blank store; NULL = default */
	const char *plugin_dir;	/* NULL = default search */
	double commit_interval;	/* seconds */
	double reload_interval;	/* seconds; 0: no periodic reloads */
	uint64_t reload_after;	/* reload after this many new mappings */
	size_t max_segments;	/* linear segments at most */
	uint64_t min_run;	/* chunks a run needs to become a linear segment */
	int no_reload;

	/* state */
	int ctl_fd;
	struct cow_geometry geo;
	struct plugin_set plugins;
	const struct cow_plugin *plugin;
	struct cow_store store;
	struct space space;	/* the file behind the CoW device */
	int image_lock_fd;	/* holds QEMU's locks on a qcow2 image; -1: none */
	int store_open;
	int store_created;	/* the store was blank and has been formatted */
	char base_name[4096];
	char cow_name[256];
	uint64_t ready_seen;	/* highest READY seq received */
	uint64_t committed;	/* READY <= this are committed */
	uint64_t nr_commits;
	uint64_t nr_commit_errors;
	uint64_t nr_copy_errors;
	int store_failing;	/* the last commit failed */
	int sync_lost;		/* a sync of the store failed: its content on disk is unknown */
	uint64_t phase;		/* the store's data phase, told to the kernel */
	int dirty;		/* mark() since the last commit */
	/* READY chunks the plugin could not record: no commit until it does */
	struct mapping *unrecorded;
	size_t nunrecorded, maxunrecorded;
	/* READYs of the kernel's replay, held, recorded once it is over */
	struct mapping *replayed_ready;
	size_t nreplayed, maxreplayed;
	struct cow_msg *out;	/* answers not yet written */
	size_t nout, maxout;
	uint16_t proto;		/* the module's protocol version */
	uint64_t nr_refused;	/* messages the kernel refused */
	/* locations granted to the kernel and not used yet (see grant_more()) */
	uint64_t granted;
	int replayed;		/* the kernel's replay to us is over */
	int grant_wait;		/* the kernel holds all it may: wait for a use */
	int grants_off;		/* the kernel refused a GRANT for good */

	/* the device's size: the table's, or what a resize asked for */
	uint64_t dev_sectors;
	int resize_reload;	/* a resize waits for a table of dev_sectors */
	int resize_error;	/* the last resize failed with this errno */
	uint64_t resize_sectors;	/* the size the last RESIZE asked for */
	uint64_t nr_resizes;	/* RESIZE messages answered */
	uint64_t grow_to;	/* the store grows to this after the replay */
	int refused_errno;	/* why the kernel refused the last message */

	/* table reloads */
	struct reloader reloader;
	struct reload_job job;
	uint64_t new_since_reload;
	struct segment *live_segs;	/* the table now live (as we built it) */
	size_t nlive;
	struct table_stats stats, job_stats;
	uint64_t nr_reloads;
	double last_suspend_ms, max_suspend_ms;
	char status_path[128];
	ev_timer reload_timer;

	struct ev_loop *loop;
	ev_io ctl_watcher;
	ev_timer commit_timer;
	ev_signal sigterm, sigint;
	int exit_code;
};

/* Attach to the group: open the control device, the devices, the store. */
int cowd_start(struct cowd *d);
/* Serve until the group goes away or a signal; returns the exit code. */
int cowd_run(struct cowd *d);
void cowd_cleanup(struct cowd *d);

#endif
