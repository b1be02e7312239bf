// SPDX-License-Identifier: GPL-2.0-only
/* The table builder: coalescing, gaps, bounds, the partial last chunk. */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "table.h"

#define CS 128

static struct segment *segs;
static size_t n;
static struct table_stats st;

static int build_with(const struct mapping *m, size_t count, uint64_t len, size_t max,
		      uint64_t min_run)
{
	struct table_policy pol = { max, min_run };

	free(segs);
	segs = NULL;
	return table_build(m, count, len, CS, &pol, &segs, &n, &st);
}

static int build(const struct mapping *m, size_t count, uint64_t len, size_t max)
{
	return build_with(m, count, len, max, 1);
}

/* The segments tile [0, len) exactly, in order. */
static int tiles(uint64_t len)
{
	uint64_t pos = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (segs[i].start != pos || !segs[i].len)
			return 0;
		pos += segs[i].len;
	}
	return pos == len;
}

static void test_empty(void)
{
	TEST("no mappings: one cow segment");
	CHECK(build(NULL, 0, 1000 * CS, 10) == 0, "build");
	CHECK(n == 1 && !segs[0].linear && segs[0].len == 1000 * CS, "n=%zu", n);
	CHECK(st.linear_segments == 0 && st.cow_segments == 1 && !st.capped, "stats");
}

static void test_coalescing(void)
{
	/* chunks 2,3,4 consecutive on the CoW device; 5 elsewhere; 9 alone */
	const struct mapping m[] = {
		{ 2, 1000 }, { 3, 1000 + CS }, { 4, 1000 + 2 * CS }, { 5, 9000 }, { 9, 1000 + 3 * CS },
	};

	TEST("coalescing");
	CHECK(build(m, 5, 20 * CS, 100) == 0, "build");
	CHECK(tiles(20 * CS), "tiles the device");
	CHECK(n == 6, "segments: %zu", n);
	CHECK(!segs[0].linear && segs[0].len == 2 * CS, "gap before");
	CHECK(segs[1].linear && segs[1].start == 2 * CS && segs[1].len == 3 * CS &&
	      segs[1].cow_sector == 1000, "run of three");
	CHECK(segs[2].linear && segs[2].start == 5 * CS && segs[2].len == CS &&
	      segs[2].cow_sector == 9000, "a chunk not contiguous on the CoW device starts a run");
	CHECK(!segs[3].linear && segs[3].start == 6 * CS && segs[3].len == 3 * CS, "gap");
	CHECK(segs[4].linear && segs[4].start == 9 * CS, "single chunk");
	CHECK(n == 6 && !segs[5].linear && segs[5].start == 10 * CS && segs[5].len == 10 * CS, "tail");
	CHECK(st.linear_segments == 3 && st.linear_chunks == 5 && st.tree_chunks == 0, "stats");
	CHECK(table_chunk_linear(segs, n, 3, CS) && table_chunk_linear(segs, n, 9, CS), "linear");
	CHECK(!table_chunk_linear(segs, n, 6, CS) && !table_chunk_linear(segs, n, 0, CS), "cow");
}

static void test_partial_last_chunk(void)
{
	const struct mapping m[] = { { 6, 64 }, { 7, 64 + CS } };

	TEST("partial last chunk");
	/* The device ends 40 sectors into chunk 7. */
	CHECK(build(m, 2, 7 * CS + 40, 100) == 0, "build");
	CHECK(tiles(7 * CS + 40), "tiles the device");
	CHECK(n == 3 && segs[1].linear && segs[1].len == CS, "chunk 6 linear: n=%zu", n);
	CHECK(!segs[2].linear && segs[2].start == 7 * CS && segs[2].len == 40,
	      "the partial last chunk is a cow segment, cut at the end");
	CHECK(!table_chunk_linear(segs, n, 7, CS) && st.tree_chunks == 1,
	      "the last chunk stays in the kernel's tree");
}

static void test_beyond_device(void)
{
	const struct mapping m[] = { { 1, 0 }, { 50, 50 * CS } };

	TEST("mappings beyond the table's length are ignored");
	CHECK(build(m, 2, 10 * CS, 100) == 0 && tiles(10 * CS), "build");
	CHECK(st.linear_chunks == 1 && st.tree_chunks == 0, "stats");
}

static void test_cap(void)
{
	struct mapping m[10];
	size_t i;

	TEST("segment cap");
	for (i = 0; i < 10; i++)
		m[i] = (struct mapping){ 2 * i, 4096 * i }; /* ten separate runs */
	CHECK(build(m, 10, 30 * CS, 4) == 0 && tiles(30 * CS), "build");
	CHECK(st.linear_segments == 4 && st.capped && st.linear_chunks == 4 && st.tree_chunks == 6,
	      "linear %zu tree %llu", st.linear_segments, (unsigned long long)st.tree_chunks);
	for (i = 1; i < n; i++)
		CHECK(segs[i].linear || segs[i - 1].linear, "adjacent cow segments are merged");
	CHECK(!table_chunk_linear(segs, n, 8, CS) && table_chunk_linear(segs, n, 6, CS), "cap order");
}

static void test_whole_device(void)
{
	struct mapping m[64];
	size_t i;

	TEST("every chunk mapped in order: one linear segment and a cow one");
	for (i = 0; i < 64; i++)
		m[i] = (struct mapping){ i, 24 + i * CS };
	CHECK(build(m, 64, 64 * CS, 1) == 0 && tiles(64 * CS), "build");
	CHECK(n == 2 && segs[0].linear && segs[0].cow_sector == 24 && segs[0].len == 63 * CS &&
	      !st.capped, "n=%zu", n);
	/* A table without a cow target would end the group and its daemon. */
	CHECK(!segs[1].linear && segs[1].start == 63 * CS && st.tree_chunks == 1,
	      "the last chunk keeps a cow target in the table");
}

static void test_min_run(void)
{
	/* a run of 3 at chunk 2, singles at 8 and 10 */
	const struct mapping m[] = {
		{ 2, 1000 }, { 3, 1000 + CS }, { 4, 1000 + 2 * CS }, { 8, 5000 }, { 10, 9000 },
	};

	TEST("runs shorter than min_run stay in the tree");
	CHECK(build_with(m, 5, 20 * CS, 100, 2) == 0 && tiles(20 * CS), "build");
	CHECK(st.linear_segments == 1 && st.linear_chunks == 3 && st.tree_chunks == 2 && !st.capped,
	      "linear %zu tree %llu", st.linear_segments, (unsigned long long)st.tree_chunks);
	CHECK(n == 3 && segs[1].linear && segs[1].start == 2 * CS, "one linear segment, cow around it");
	CHECK(!table_chunk_linear(segs, n, 8, CS) && !table_chunk_linear(segs, n, 10, CS), "singles");
	CHECK(build_with(m, 5, 20 * CS, 100, 4) == 0 && n == 1 && !segs[0].linear,
	      "nothing long enough: one cow segment");
}

int main(void)
{
	test_min_run();
	test_empty();
	test_coalescing();
	test_partial_last_chunk();
	test_beyond_device();
	test_cap();
	test_whole_device();
	free(segs);
	return check_done("test-table");
}
