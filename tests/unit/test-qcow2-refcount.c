// SPDX-License-Identifier: GPL-2.0-only
/*
 * The qcow2 refcount structures at their boundaries: power cuts while
 * refcount blocks are made and while the refcount table grows, and a store
 * that cannot grow, which must fill up in locate(), never in a commit.
 *
 * Power cuts are judged by qemu-img check.
 *
 * Every write and sync the plugin makes during a commit is recorded (the
 * test links with --wrap=pwrite_full,--wrap=fdatasync).  A cut is then
 * replayed on a copy of the image as it was before the commit, in two ways
 * for every write k: all writes up to k landed (a prefix), or every write
 * of the synced steps before k's plus k alone landed (writes between two
 * syncs reach the disk in any order).  Each such image must pass
 * `qemu-img check` with leaks at most; the finished commit, with none.
 *
 * The commits tested: the first of an image with 4 KiB clusters, 4200
 * mappings that cross into two refcount blocks made while it runs (the
 * second counted by the third); and, with 512-byte clusters (a refcount
 * block counts 256 of them and qemu-img's one-cluster refcount table
 * addresses 64 blocks; the metadata code does not depend on the size),
 * a commit that outgrows the refcount table; and growing the image.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "record.h"
#include "sh.h"
#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);
static const struct cow_plugin *P;
static char dir[] = "/tmp/test-qcow2-refcount.XXXXXX";

#define BASE_SIZE (20 << 20)

/* ---- helpers ------------------------------------------------------------- */

struct fixture {
	struct cow_store s;
	char base[256], cow[256], before[256], cut[256];
	uint64_t next_chunk;
	int cluster;
};

static void setup(struct fixture *f, int cluster)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->base, sizeof(f->base), "%s/base", dir);
	snprintf(f->cow, sizeof(f->cow), "%s/cow.qcow2", dir);
	snprintf(f->before, sizeof(f->before), "%s/before.qcow2", dir);
	snprintf(f->cut, sizeof(f->cut), "%s/cut.qcow2", dir);
	if (sh("truncate -s %d %s && qemu-img create -q -f qcow2 -o cluster_size=%d -b %s -F raw %s",
	       BASE_SIZE, f->base, cluster, f->base, f->cow))
		abort();
	f->s.base_fd = open(f->base, O_RDONLY);
	f->s.cow_fd = open(f->cow, O_RDWR);
	f->s.cow_size = 0;
	f->s.base_size = BASE_SIZE;
	f->s.chunk_sectors = cluster / COW_SECTOR;
	f->cluster = cluster;
	f->s.base_name = f->base;
	f->s.cow_is_file = 1;
	if (f->s.base_fd < 0 || f->s.cow_fd < 0)
		abort();
	f->s.cow_size = (uint64_t)lseek(f->s.cow_fd, 0, SEEK_END);
}

/* @n first writes, as the kernel and cowd make them, not yet committed. */
static int map_chunks(struct fixture *f, uint64_t n)
{
	char buf[4096];
	uint64_t sector;
	int valid, r;

	for (; n; n--, f->next_chunk++) {
		r = P->locate(&f->s, f->next_chunk, &sector, &valid);
		if (r)
			return r;
		memset(buf, (int)(f->next_chunk * 7 + 1) & 0xff, sizeof(buf));
		if (pwrite(f->s.cow_fd, buf, f->cluster, (off_t)(sector * COW_SECTOR)) != f->cluster)
			return -errno;
		r = P->mark(&f->s, f->next_chunk, sector);
		if (r)
			return r;
	}
	return 0;
}

/* @n first writes, as map_chunks() makes them, to chunks @first, +@step, ... */
static int map_spaced(struct fixture *f, uint64_t first, uint64_t step, uint64_t n)
{
	int r = 0;

	for (; n && !r; n--, first += step) {
		f->next_chunk = first;
		r = map_chunks(f, 1);
	}
	return r;
}

/* The image before the commit, with the writes of cut @k landed. */
static void make_cut(struct fixture *f, size_t k, int prefix, off_t size)
{
	int fd;

	if (sh("cp %s %s", f->before, f->cut))
		abort();
	fd = open(f->cut, O_RDWR);
	if (fd < 0 || ftruncate(fd, size))
		abort();
	record_replay(fd, k, prefix);
	close(fd);
}

/* The last commit_with_cuts() wrote this many times in [watch_off, +watch_len). */
static uint64_t watch_off, watch_len;
static size_t watch_writes;

static int do_commit(struct fixture *f)
{
	return P->commit(&f->s);
}

/* For grow_with_cuts(): the size to grow to, and the sizes a cut may show. */
static uint64_t grow_to, grow_from;

static int do_grow(struct fixture *f)
{
	return P->grow(&f->s, grow_to);
}

/* A cut image's virtual size, as qemu-img info says. */
static uint64_t cut_size(struct fixture *f)
{
	char cmd[512], line[256];
	unsigned long long v = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "qemu-img info --output=json %s | grep '\"virtual-size\"'", f->cut);
	p = popen(cmd, "r");
	if (p && fgets(line, sizeof(line), p))
		sscanf(line, " \"virtual-size\": %llu", &v);
	if (p)
		pclose(p);
	return v;
}

/*
 * Run @op (a commit of what is marked, or a grow), recording it; then
 * replay every cut.  Returns the number of cut images qemu-img check
 * found corrupt (or, for a grow, of a size neither before nor after).
 */
static int op_with_cuts(struct fixture *f, const char *what, int (*op)(struct fixture *))
{
	struct stat st;
	size_t k, bad = 0, cuts = 0;
	int prefix, r, first_bad = -1;

	if (fdatasync(f->s.cow_fd) || sh("cp %s %s", f->cow, f->before))
		abort();
	record_start(f->s.cow_fd);
	r = op(f);
	record_stop();
	CHECK(r == 0, "%s: %s", what, f->s.error);
	CHECK(sh("qemu-img check -q %s", f->cow) == 0, "%s: the committed image is not clean", what);
	if (fstat(f->s.cow_fd, &st))
		abort();
	for (k = 0; k < nrecs; k++) {
		for (prefix = 1; prefix >= 0; prefix--) {
			make_cut(f, k, prefix, st.st_size);
			cuts++;
			/* 0: clean, 3: leaked clusters only. */
			r = sh("qemu-img check -q %s >/dev/null 2>&1", f->cut);
			if (op == do_grow && r != 2 && cut_size(f) != grow_from &&
			    cut_size(f) != grow_to) {
				fprintf(stderr, "%s: cut at write %zu (%s): size %llu\n", what, k,
					prefix ? "prefix" : "alone", (unsigned long long)cut_size(f));
				r = 2;
			}
			if (r != 0 && r != 3) {
				if (first_bad < 0) {
					first_bad = (int)k;
					fprintf(stderr, "%s: cut at write %zu of %zu (%s) is corrupt:\n",
						what, k, nrecs, prefix ? "prefix" : "alone");
					sh("qemu-img check %s | head -n 5 >&2", f->cut);
				}
				bad++;
			}
		}
	}
	CHECK(nrecs >= 2, "%s: only %zu writes recorded", what, nrecs);
	printf("%s: %zu writes in %d synced steps, %zu cut images, %zu corrupt\n", what, nrecs,
	       epoch, cuts, bad);
	for (watch_writes = 0, k = 0; k < nrecs; k++)
		watch_writes += recs[k].off >= watch_off && recs[k].off < watch_off + watch_len;
	record_forget();
	return (int)bad;
}

static int commit_with_cuts(struct fixture *f, const char *what)
{
	return op_with_cuts(f, what, do_commit);
}

/* ---- tests --------------------------------------------------------------- */

/* What was written reads back through qemu, for chunks @c... (-1 ends). */
static int data_intact(struct fixture *f, ...)
{
	va_list ap;
	char list[256] = "";
	int c, n = 0;

	va_start(ap, f);
	while ((c = va_arg(ap, int)) >= 0)
		n += snprintf(list + n, sizeof(list) - n, " %d", c);
	va_end(ap);
	return sh("qemu-img convert -f qcow2 -O raw %s %s/out.raw && "
		  "for c in%s; do "
		  "  want=$(printf '%%02x' $(( (c * 7 + 1) %% 256 ))); "
		  "  got=$(od -An -tx1 -j $((c * %d)) -N1 %s/out.raw | tr -d ' '); "
		  "  [ \"$got\" = \"$want\" ] || { echo chunk $c: $got not $want >&2; exit 1; }; done",
		  f->cow, dir, list, f->cluster, dir) == 0;
}

static void teardown(struct fixture *f)
{
	P->close(&f->s);
	close(f->s.base_fd);
	close(f->s.cow_fd);
	sh("rm -f %s/*", dir);
}

/* qemu's own review case: 4 KiB clusters, 4200 mappings in one commit. */
static void test_new_refcount_blocks(void)
{
	struct fixture f;

	TEST("power cuts while refcount blocks are made");
	setup(&f, 4096);
	CHECK(P->open(&f.s) == 0, "open: %s", f.s.error);
	CHECK(map_chunks(&f, 4200) == 0, "map: %s", f.s.error);
	CHECK(commit_with_cuts(&f, "4200 mappings, 4 KiB clusters") == 0,
	      "a cut corrupted the image");
	CHECK(data_intact(&f, 0, 2047, 2048, 4199, -1), "the data is not what was written");
	teardown(&f);
}

static void test_grow_refcount_table(void)
{
	struct fixture f;
	uint64_t rt_before, rt_after;
	int r;

	TEST("power cuts while the refcount table grows");
	setup(&f, 512);
	CHECK(P->open(&f.s) == 0, "open: %s", f.s.error);
	/* Up to the end of what the one-cluster refcount table addresses. */
	while (!(r = map_chunks(&f, 2000)) && f.next_chunk < 14000)
		CHECK(P->commit(&f.s) == 0, "commit: %s", f.s.error);
	CHECK(r == 0, "map: %s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "commit: %s", f.s.error);
	if (pread(f.s.cow_fd, &rt_before, 8, 48) != 8)
		abort();
	CHECK(map_chunks(&f, 2400) == 0, "map: %s", f.s.error);
	CHECK(commit_with_cuts(&f, "16400 mappings, 512-byte clusters") == 0,
	      "a cut corrupted the image");
	if (pread(f.s.cow_fd, &rt_after, 8, 48) != 8)
		abort();
	CHECK(rt_before != rt_after, "the refcount table did not move (it never grew)");
	/* And the image goes on: more commits on the grown table. */
	CHECK(map_chunks(&f, 3000) == 0, "map: %s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "commit: %s", f.s.error);
	CHECK(sh("qemu-img check -q %s", f.cow) == 0, "not clean after a commit on the grown table");
	CHECK(data_intact(&f, 0, 13999, 16399, 19399, -1), "the data is not what was written");
	teardown(&f);
}

/*
 * A store that cannot grow (a block device): locate() refuses the cluster
 * that would leave no room for the refcount blocks its commit makes, so
 * every mapping it gave out commits.  512-byte clusters: a block counts
 * 128 KiB, so a 1 MiB store needs seven new ones.
 */
static void test_full_store(void)
{
	struct fixture f;
	uint64_t mapped;
	int r;

	TEST("a store that cannot grow fills up in locate");
	setup(&f, 512);
	if (ftruncate(f.s.cow_fd, 1 << 20))
		abort();
	f.s.cow_size = 1 << 20;
	f.s.cow_is_file = 0;	/* not a file nor a loop device: fixed size */
	CHECK(P->open(&f.s) == 0, "open: %s", f.s.error);
	while (!(r = map_chunks(&f, 1)))
		;
	mapped = f.next_chunk;
	CHECK(r == -ENOSPC, "locate: %d (%s), want ENOSPC", r, f.s.error);
	CHECK(mapped > 1500, "only %llu chunks mapped in 2048 clusters", (unsigned long long)mapped);
	r = P->commit(&f.s);
	CHECK(r == 0, "the commit of what locate gave out failed: %s", f.s.error);
	CHECK(sh("qemu-img check -q %s", f.cow) == 0, "not clean");
	CHECK(data_intact(&f, 0, (int)mapped - 1, -1), "the data is not what was written");
	teardown(&f);
}

/*
 * One write per L2 table: 64 chunks a chunk apart (no two in a run) go to
 * their table (4 KiB clusters: 512 entries) in a single write, which keeps
 * the entry an earlier commit made there, and power cuts stay safe.
 */
static void test_one_write_per_table(void)
{
	struct fixture f;
	uint64_t l1, l2;

	TEST("a commit writes each L2 table once");
	setup(&f, 4096);
	CHECK(P->open(&f.s) == 0, "open: %s", f.s.error);
	CHECK(map_chunks(&f, 1) == 0 && P->commit(&f.s) == 0, "chunk 0: %s", f.s.error);
	if (pread(f.s.cow_fd, &l1, 8, 40) != 8 || pread(f.s.cow_fd, &l2, 8, (off_t)be64toh(l1)) != 8)
		abort();
	CHECK(map_spaced(&f, 2, 2, 64) == 0, "chunk %llu: %s", (unsigned long long)f.next_chunk,
	      f.s.error);
	watch_off = be64toh(l2) & 0x00fffffffffffe00ULL;
	watch_len = 4096;
	CHECK(commit_with_cuts(&f, "64 scattered mappings in one table") == 0,
	      "a cut corrupted the image");
	CHECK(watch_writes == 1, "%zu writes to the L2 table, want 1", watch_writes);
	CHECK(data_intact(&f, 0, 2, 64, 128, -1), "the data is not what was written");
	watch_len = 0;
	teardown(&f);
}

/*
 * One L1 write per run of new tables: chunks in four consecutive 2 MiB
 * regions (4 KiB clusters) need four new L2 tables; their L1 entries go
 * out in a single write.
 */
static void test_one_l1_write(void)
{
	struct fixture f;
	uint64_t l1;

	TEST("a commit writes a run of new L1 entries once");
	setup(&f, 4096);
	CHECK(P->open(&f.s) == 0, "open: %s", f.s.error);
	CHECK(map_spaced(&f, 3, 512, 4) == 0, "chunk %llu: %s", (unsigned long long)f.next_chunk,
	      f.s.error);
	if (pread(f.s.cow_fd, &l1, 8, 40) != 8)
		abort();
	watch_off = be64toh(l1);
	watch_len = 4096;
	CHECK(commit_with_cuts(&f, "4 new L2 tables in consecutive L1 entries") == 0,
	      "a cut corrupted the image");
	CHECK(watch_writes == 1, "%zu writes to the L1 table, want 1", watch_writes);
	CHECK(data_intact(&f, 3, 515, 1027, 1539, -1), "the data is not what was written");
	watch_len = 0;
	teardown(&f);
}


/*
 * cowctl resize: power cuts while the image grows, its L1 table in place
 * (4 KiB clusters: one cluster of L1 entries addresses 1 GiB) or moved to
 * the end (512-byte clusters: the 20 MiB image's L1 clusters are full);
 * every cut image checks clean (leaks at most) and has the old size or the
 * new one; the data stays, and chunks past the old end map and commit.
 */
static void test_grow_cuts(void)
{
	static const struct {
		int cluster;
		uint64_t to;
		const char *what;
	} cases[] = {
		{ 4096, 100 << 20, "power cuts while growing 20 -> 100 MiB, L1 in place" },
		{ 512, 40 << 20, "power cuts while growing 20 -> 40 MiB, L1 moved" },
	};
	struct fixture f;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t l1_before, l1_after;

		TEST(cases[i].what);
		setup(&f, cases[i].cluster);
		CHECK(P->open(&f.s) == 0, "open: %s", f.s.error);
		CHECK(map_chunks(&f, 10) == 0 && P->commit(&f.s) == 0, "map: %s", f.s.error);
		if (pread(f.s.cow_fd, &l1_before, 8, 40) != 8)
			abort();
		grow_from = BASE_SIZE;
		grow_to = cases[i].to;
		CHECK(op_with_cuts(&f, cases[i].what, do_grow) == 0, "a cut corrupted the image");
		if (pread(f.s.cow_fd, &l1_after, 8, 40) != 8)
			abort();
		CHECK((l1_before != l1_after) == (cases[i].cluster == 512),
		      "the L1 table %s", l1_before != l1_after ? "moved" : "stayed");
		CHECK(f.s.dev_size == cases[i].to, "dev_size %llu", (unsigned long long)f.s.dev_size);
		f.next_chunk = cases[i].to / cases[i].cluster - 1;
		CHECK(map_chunks(&f, 1) == 0 && P->commit(&f.s) == 0, "the last chunk: %s", f.s.error);
		CHECK(sh("qemu-img check -q %s", f.cow) == 0, "not clean after a commit past the old end");
		CHECK(data_intact(&f, 0, 9, (int)(cases[i].to / cases[i].cluster - 1), -1),
		      "the data is not what was written");
		teardown(&f);
	}
}

int main(void)
{
	int r;

	P = cow_plugin_init();
	r = qemu_test_setup(dir, "test-qcow2-refcount");
	if (r)
		return r;
	test_new_refcount_blocks();
	test_grow_refcount_table();
	test_full_store();
	test_one_write_per_table();
	test_one_l1_write();
	test_grow_cuts();
	sh("rm -rf %s", dir);
	return check_done("test-qcow2-refcount");
}
