/* SPDX-License-Identifier: GPL-2.0-only */
/* cowd's state and event loop. */
#ifndef COW_SERVER_H
#define COW_SERVER_H

#include <ev.h>
#include <stdint.h>

#include "cow-plugin.h"
#include "plugin-loader.h"
#include "proto.h"

struct cowd {
	/* options */
	const char *ident;
	const char *format;	/* for a blank store; NULL = default */
	const char *plugin_dir;	/* NULL = default search */
	double commit_interval;	/* seconds */

	/* state */
	int ctl_fd;
	struct cow_geometry geo;
	struct plugin_set plugins;
	const struct cow_plugin *plugin;
	struct cow_store store;
	int store_open;
	int store_created;	/* the store was blank and has been formatted */
	char base_name[4096];
	char cow_name[256];
	uint64_t ready_seen;	/* highest READY seq received */
	uint64_t committed;	/* READY <= this are committed */
	uint64_t nr_commits;
	int dirty;		/* mark() since the last commit */
	struct cow_msg *out;	/* answers not yet written */
	size_t nout, maxout;

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
