// SPDX-License-Identifier: GPL-2.0-only
#include <stdio.h>
#include <unistd.h>

#include "progress.h"

void progress_start(struct progress *p, const char *what, uint64_t total)
{
	*p = (struct progress){ .total = total, .tty = isatty(2), .last_pct = -1, .what = what };
}

void progress_show(struct progress *p, uint64_t add)
{
	int pct;

	p->done += add;
	if (!p->tty || !p->total)
		return;
	pct = (int)(p->done * 100 / p->total);
	if (pct == p->last_pct)
		return;
	p->last_pct = pct;
	fprintf(stderr, "\r%s [%-40.*s] %3d%%", p->what, pct * 40 / 100,
		"########################################", pct);
	if (p->done >= p->total)
		fputc('\n', stderr);
}
