// SPDX-License-Identifier: GPL-2.0-only
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static const char *log_prog = "dm-cow";
static int log_syslog;
static int log_verbose;
static int log_keep;
static int log_kept;
static char log_kept_msg[LOG_KEPT_ERRORS][512];

void log_keep_errors(void)
{
	log_keep = 1;
	log_kept = 0;
}

const char *log_error(int i)
{
	return i >= 0 && i < log_kept ? log_kept_msg[i] : NULL;
}

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
	if (prio == LOG_ERR && log_keep && log_kept < LOG_KEPT_ERRORS) {
		va_start(ap, fmt);
		vsnprintf(log_kept_msg[log_kept++], sizeof(log_kept_msg[0]), fmt, ap);
		va_end(ap);
	}
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
