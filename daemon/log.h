/* SPDX-License-Identifier: GPL-2.0-only */
/* Logging for cowd and cowctl: stderr by default, syslog on request. */
#ifndef COW_LOG_H
#define COW_LOG_H

#include <syslog.h>

void log_init(const char *prog, int use_syslog, int verbose);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Also keep the error messages (the first LOG_KEPT_ERRORS), for log_error(). */
void log_keep_errors(void);
/* The @i-th error message kept since log_keep_errors(), or NULL. */
const char *log_error(int i);
#define LOG_KEPT_ERRORS 8

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
