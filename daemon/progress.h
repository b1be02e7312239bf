/* SPDX-License-Identifier: GPL-2.0-only */
/* A progress bar on stderr for cowctl's long offline commands (a tty only). */
#ifndef COWCTL_PROGRESS_H
#define COWCTL_PROGRESS_H

#include <stdint.h>

struct progress {
	uint64_t done, total;
	int tty, last_pct;
	const char *what;
};

/* A bar for @total units of @what, drawn only when stderr is a terminal. */
void progress_start(struct progress *p, const char *what, uint64_t total);
/* @add more units done: redraw when the percentage moved. */
void progress_show(struct progress *p, uint64_t add);

#endif
