/* SPDX-License-Identifier: GPL-2.0-only */
/* A minimal test framework: CHECK() counts, TEST() names, check_done() sums. */
#ifndef COW_CHECK_H
#define COW_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;
static const char *check_test = "";

#define TEST(name) (check_test = (name))

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (cond) {                                                    \
			check_passed++;                                        \
		} else {                                                       \
			check_failed++;                                        \
			fprintf(stderr, "FAIL %s (%s:%d): %s: ", check_test,   \
				__FILE__, __LINE__, #cond);                    \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

static inline int check_done(const char *suite)
{
	printf("%s: %d passed, %d failed\n", suite, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
