// SPDX-License-Identifier: GPL-2.0-only
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static const char *log_prog = "dm-cow";
static int log_syslog;
static int log_verbose;

void log_init(const char *prog, int use_syslog, int verbose)
{
	log_prog = prog;
	log_syslog = use_syslog;
	log_verbose = verbose;
	if (use_syslog)
		openlog(prog, LOG_PID, LOG_DAEMON);
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio == LOG_DEBUG && !log_verbose)
		return;
	va_start(ap, fmt);
	if (log_syslog) {
		vsyslog(prio, fmt, ap);
	} else {
		fprintf(stderr, "%s: ", log_prog);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}
