/* SPDX-License-Identifier: GPL-2.0-only */
/* Runs of CoW sectors a plugin reports (for_each_unused()), for unit tests. */
#ifndef COW_TEST_RUNS_H
#define COW_TEST_RUNS_H

#include <stdint.h>

struct runs {
	uint64_t n, first[64], count[64];
};

static inline int collect_run(void *ctx, uint64_t sector, uint64_t count)
{
	struct runs *r = ctx;

	if (r->n < 64) {
		r->first[r->n] = sector;
		r->count[r->n] = count;
	}
	r->n++;
	return 0;
}

/* Whether @sector is in one of @r's runs. */
static inline int in_runs(const struct runs *r, uint64_t sector)
{
	uint64_t i;

	for (i = 0; i < r->n && i < 64; i++)
		if (sector >= r->first[i] && sector < r->first[i] + r->count[i])
			return 1;
	return 0;
}

#endif
