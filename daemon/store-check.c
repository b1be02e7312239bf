// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-check.h"
#include "cow-store.h"

struct mapping {
	uint64_t chunk, sector;
};

struct walk {
	struct offline_store *o;
	struct check_report *rep;
	struct mapping *m;
	size_t n, max;
	int out_of_memory;
};

static void problem(struct check_report *rep, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct check_report *rep, const char *fmt, ...)
{
	va_list ap;

	if (!rep->problems++) {
		va_start(ap, fmt);
		vsnprintf(rep->first, sizeof(rep->first), fmt, ap);
		va_end(ap);
	}
}

static int collect(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct walk *w = ctx;
	const struct cow_store *s = &w->o->s;
	uint64_t cs = s->chunk_sectors, phase = w->o->p->data_phase(&w->o->s) % cs;

	if (chunk >= w->o->nr_chunks)
		problem(w->rep, "chunk %llu is mapped, but the base has only %llu chunks",
			(unsigned long long)chunk, (unsigned long long)w->o->nr_chunks);
	if (sector % cs != phase)
		problem(w->rep, "chunk %llu lives at sector %llu, out of the store's phase %llu",
			(unsigned long long)chunk, (unsigned long long)sector,
			(unsigned long long)phase);
	if ((sector + cs) * COW_SECTOR > s->cow_size)
		problem(w->rep, "chunk %llu lives at sector %llu, past the end of the store",
			(unsigned long long)chunk, (unsigned long long)sector);
	if (w->n && chunk <= w->m[w->n - 1].chunk)
		problem(w->rep, "chunk %llu is listed out of order or twice",
			(unsigned long long)chunk);
	if (array_reserve(&w->m, &w->max, w->n, sizeof(*w->m))) {
		w->out_of_memory = 1;
		return -ENOMEM;
	}
	w->m[w->n++] = (struct mapping){ chunk, sector };
	return 0;
}

static int by_sector(const void *a, const void *b)
{
	const struct mapping *x = a, *y = b;

	return x->sector < y->sector ? -1 : x->sector > y->sector;
}

enum check_result store_check(struct offline_store *o, struct check_report *rep)
{
	struct walk w = { .o = o, .rep = rep };
	size_t i;
	int r;

	memset(rep, 0, sizeof(*rep));
	r = o->p->for_each_mapping(&o->s, collect, &w);
	if (r && !w.out_of_memory)
		problem(rep, "cannot list the mappings: %s",
			o->s.error[0] ? o->s.error : strerror(-r));
	if (w.out_of_memory)
		problem(rep, "out of memory listing the mappings");
	rep->mapped = w.n;
	qsort(w.m, w.n, sizeof(*w.m), by_sector);
	for (i = 1; i < w.n; i++)
		if (w.m[i].sector < w.m[i - 1].sector + o->s.chunk_sectors)
			problem(rep, "chunks %llu and %llu share CoW sectors from %llu",
				(unsigned long long)w.m[i - 1].chunk,
				(unsigned long long)w.m[i].chunk,
				(unsigned long long)w.m[i].sector);
	free(w.m);
	if (rep->problems)
		return CHECK_CORRUPT;
	if (!COW_PLUGIN_HAS(o->p, check))
		return CHECK_CLEAN;
	o->s.error[0] = 0;
	r = o->p->check(&o->s);
	if (r < 0) {
		problem(rep, "%s", o->s.error[0] ? o->s.error : strerror(-r));
		return CHECK_CORRUPT;
	}
	if (r > 0) {
		snprintf(rep->first, sizeof(rep->first), "%s", o->s.error);
		return CHECK_LEAKS;
	}
	return CHECK_CLEAN;
}
