/* SPDX-License-Identifier: GPL-2.0-only */
/* sh(): run a shell command line built like printf; its exit status. */
#ifndef COW_TEST_SH_H
#define COW_TEST_SH_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

/*
 * The start of a test judged by qemu-img: the scratch directory @dir (a
 * mkdtemp template) made, qemu-img there.  0, or what main() returns.
 */
static inline int qemu_test_setup(char *dir, const char *suite)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	if (system("qemu-img --version >/dev/null 2>&1")) {
		fprintf(stderr, "%s: qemu-img is missing (make deps installs qemu-utils)\n", suite);
		return 1;
	}
	return 0;
}

#endif
