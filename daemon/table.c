// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cow-store.h"
#include "table.h"

struct builder {
	struct segment *segs;
	size_t n, max;
};

static int add(struct builder *b, uint64_t start, uint64_t len, int linear, uint64_t cow_sector)
{
	if (!len)
		return 0;
	/* Adjacent cow segments merge: a run left out by the cap joins them. */
	if (!linear && b->n && !b->segs[b->n - 1].linear &&
	    b->segs[b->n - 1].start + b->segs[b->n - 1].len == start) {
		b->segs[b->n - 1].len += len;
		return 0;
	}
	if (array_reserve(&b->segs, &b->max, b->n, sizeof(*b->segs)))
		return -ENOMEM;
	b->segs[b->n++] = (struct segment){ start, len, linear, cow_sector };
	return 0;
}

int table_build(const struct mapping *maps, size_t n, uint64_t dev_len, uint32_t chunk_sectors,
		const struct table_policy *pol, struct segment **out, size_t *nout,
		struct table_stats *st)
{
	struct builder b = { 0 };
	/*
	 * The last chunk is always left to a cow segment: a table without a
	 * cow target would end the group (its daemon, counters and control
	 * device) once every chunk is mapped.
	 */
	uint64_t pos = 0, last_chunk = dev_len ? (dev_len - 1) / chunk_sectors : 0;
	size_t i = 0, runs = 0;
	int r = 0;

	memset(st, 0, sizeof(*st));
	while (i < n && !r) {
		size_t j = i + 1;
		uint64_t start = maps[i].chunk * chunk_sectors, end;

		if (maps[i].chunk >= last_chunk)
			break;
		while (j < n && maps[j].chunk < last_chunk && maps[j].chunk == maps[j - 1].chunk + 1 &&
		       maps[j].sector == maps[j - 1].sector + chunk_sectors)
			j++;
		end = (maps[j - 1].chunk + 1) * chunk_sectors;
		if (j - i < pol->min_run) {
			st->tree_chunks += j - i;
		} else if (runs < pol->max_linear) {
			r = add(&b, pos, start - pos, 0, 0);
			if (!r)
				r = add(&b, start, end - start, 1, maps[i].sector);
			pos = end;
			runs++;
			st->linear_chunks += j - i;
		} else {
			st->capped = 1;
			st->tree_chunks += j - i;
		}
		i = j;
	}
	for (; i < n; i++)
		if (maps[i].chunk * chunk_sectors < dev_len)
			st->tree_chunks++;
	if (!r)
		r = add(&b, pos, dev_len - pos, 0, 0);
	if (r) {
		free(b.segs);
		return r;
	}
	for (i = 0; i < b.n; i++) {
		if (b.segs[i].linear)
			st->linear_segments++;
		else
			st->cow_segments++;
	}
	*out = b.segs;
	*nout = b.n;
	return 0;
}

int table_chunk_linear(const struct segment *segs, size_t n, uint64_t c, uint32_t chunk_sectors)
{
	uint64_t start = c * chunk_sectors;
	size_t lo = 0, hi = n;

	/* The segments are sorted and contiguous: binary search for start. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (segs[mid].start + segs[mid].len <= start)
			lo = mid + 1;
		else if (segs[mid].start > start)
			hi = mid;
		else
			return segs[mid].linear &&
			       (segs[mid].start + segs[mid].len >= start + chunk_sectors ||
				mid + 1 == n);
	}
	return 0;
}
