// SPDX-License-Identifier: GPL-2.0-only
/*
 * The packed store's journal ring and its checkpoints, written a piece
 * per commit, at their boundaries:
 * - a power cut at every 4 KiB block of every write of two workloads that
 *   wrap the ring, finish checkpoints on pace and early, and fall back to
 *   a whole checkpoint for a commit too large for the journal.  Writes
 *   between two syncs reach the disk in any order, so each block is cut
 *   two ways: with every block before it (a prefix), and alone after the
 *   last sync.  Each cut must open with the mappings of the commits
 *   acknowledged before it and perhaps the one in flight, nothing else,
 *   then commit more and open again with all of them;
 * - a torn commit, then one over it torn the other way: the first must
 *   never be completed (its numbers are never written again);
 * - no commit writes more than its share of a checkpoint (bytes counted);
 * - a version 2 store, linear journal and torn end included, opens as it
 *   is and moves to the ring at its first commit; a version 3 store whose
 *   new header could not be written opens after the commit is retried;
 * - crafted ring blocks, far ahead and out of place.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "record.h"
#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);
static const struct cow_plugin *P;
static char dir[] = "/tmp/test-packed-journal.XXXXXX";

#define BLOCK 4096
#define CHUNK_SECTORS 8	/* 4 KiB chunks: many slots on a small device */

/* Header fields (little-endian) the tests read. */
enum { H_VERSION = 8, H_STORE_ID = 32, H_JSTART = 40, H_JBLOCKS = 48, H_CKPT0 = 56,
       H_CKPT1 = 64, H_CBLOCKS = 72, H_DATA = 80 };

struct fixture {
	struct cow_store s;
	char base[256], cow[256];
	uint64_t next_chunk;	/* chunks 0, 1, ... get slots 0, 1, ... */
};

static uint64_t field(int fd, size_t off, size_t len)
{
	uint64_t v = 0;

	if (pread(fd, &v, len, (off_t)off) != (ssize_t)len)
		abort();
	return le64toh(v);
}

static void setup(struct fixture *f, const char *name, uint64_t cow_size)
{
	char buf[BLOCK];
	uint64_t off;
	int fd;

	memset(f, 0, sizeof(*f));
	snprintf(f->base, sizeof(f->base), "%s/%s.base", dir, name);
	snprintf(f->cow, sizeof(f->cow), "%s/%s.cow", dir, name);
	fd = open(f->base, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (off = 0; off < (4 << 20); off += sizeof(buf)) {
		memset(buf, (int)(off >> 12) & 0xff, sizeof(buf));
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) != sizeof(buf))
			abort();
	}
	f->s.base_fd = fd;
	f->s.cow_fd = open(f->cow, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f->s.cow_fd < 0 || ftruncate(f->s.cow_fd, (off_t)cow_size))
		abort();
	f->s.base_size = 4 << 20;
	f->s.cow_size = cow_size;
	f->s.chunk_sectors = CHUNK_SECTORS;
	f->s.base_name = f->base;
}

static void teardown(struct fixture *f)
{
	P->close(&f->s);
	close(f->s.base_fd);
	close(f->s.cow_fd);
	unlink(f->base);
	unlink(f->cow);
}

/* Map @n chunks from @first, each in the next free slot, and commit. */
static int commit_chunks(struct fixture *f, uint64_t first, uint64_t n)
{
	uint64_t i, sector;
	int valid, r;

	for (i = 0; i < n; i++) {
		r = P->locate(&f->s, first + i, &sector, &valid);
		if (!r)
			r = P->mark(&f->s, first + i, sector);
		if (r)
			return r;
	}
	return P->commit(&f->s);
}

/* Chunks from here on are mapped after a cut, in slots of their own choosing. */
#define LATER 1000000

struct listing {
	uint64_t n, data_start;
	uint64_t below;		/* mappings of chunks below LATER */
	int wrong;		/* one of them is not chunk c in slot c, c < below */
};

static int list_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct listing *l = ctx;

	l->n++;
	if (chunk >= LATER)
		return 0;
	/* In chunk order: 0, 1, 2 ... each in its own slot, no gap. */
	if (chunk != l->below || sector != l->data_start + chunk * CHUNK_SECTORS)
		l->wrong = 1;
	l->below++;
	return 0;
}

/* Mappings of the open store; chunks below LATER were mapped in order. */
static struct listing list(struct fixture *f)
{
	struct listing l = { .data_start = field(f->s.cow_fd, H_DATA, 8) };

	P->for_each_mapping(&f->s, list_one, &l);
	return l;
}

struct has_chunk {
	uint64_t chunk;
	int found;
};

static int has_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct has_chunk *h = ctx;

	h->found |= chunk == h->chunk;
	return 0;
}

static int list_has(struct fixture *f, uint64_t chunk)
{
	struct has_chunk h = { chunk, 0 };

	P->for_each_mapping(&f->s, has_one, &h);
	return h.found;
}

/* ---- power cuts ------------------------------------------------------------ */

struct piece {
	size_t rec;		/* record in record.h's log */
	uint64_t off;		/* within the record's write */
};

struct workload {
	const char *name;
	const uint64_t *commits;	/* mappings per commit */
	size_t ncommits;
};

/*
 * Run @w with every write recorded, then cut it at every 4 KiB block.
 * @cum[i]: mappings after commit i; @acked[i]: syncs done when commit i
 * returned.  Returns the number of cuts judged.
 */
static size_t cut_everywhere(const struct workload *w)
{
	struct fixture f;
	uint64_t *cum = calloc(w->ncommits + 1, sizeof(*cum)), meta, i;
	int *acked = calloc(w->ncommits + 1, sizeof(*acked));
	char *before, *image, *epoch_image, cut_path[256];
	struct piece *pieces = NULL;
	size_t npieces = 0, maxpieces = 0, k, cuts = 0, failures = 0;
	int cut_fd, ok = 1, last_epoch = -1, mode;

	setup(&f, w->name, 16 << 20);
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s: create/open: %s", w->name, f.s.error);
	meta = field(f.s.cow_fd, H_DATA, 8) * 512;
	before = malloc(meta);
	image = malloc(meta);
	epoch_image = malloc(meta);
	if (!cum || !acked || !before || !image || !epoch_image ||
	    pread(f.s.cow_fd, before, meta, 0) != (ssize_t)meta)
		abort();
	record_start(f.s.cow_fd);
	for (i = 0; i < w->ncommits && ok; i++) {
		ok = commit_chunks(&f, f.next_chunk, w->commits[i]) == 0;
		f.next_chunk += w->commits[i];
		cum[i + 1] = f.next_chunk;
		acked[i + 1] = epoch;
	}
	record_stop();
	CHECK(ok, "%s: commit %llu: %s", w->name, (unsigned long long)i, f.s.error);
	for (k = 0; k < nrecs; k++) {
		uint64_t off;

		if (recs[k].off + recs[k].len > meta || recs[k].off % BLOCK || recs[k].len % BLOCK)
			ok = 0;
		for (off = 0; off < recs[k].len; off += BLOCK) {
			if (array_reserve(&pieces, &maxpieces, npieces, sizeof(*pieces)))
				abort();
			pieces[npieces++] = (struct piece){ k, off };
		}
	}
	CHECK(ok, "%s: the plugin writes whole blocks of metadata only", w->name);

	snprintf(cut_path, sizeof(cut_path), "%s/%s.cut", dir, w->name);
	memcpy(image, before, meta);
	memcpy(epoch_image, before, meta);
	for (k = 0; k < npieces; k++) {
		const struct rec *r = &recs[pieces[k].rec];
		size_t acknowledged = 0;

		/* image: every block up to k; epoch_image: the synced ones. */
		if (r->epoch != last_epoch) {
			memcpy(epoch_image, image, meta);
			last_epoch = r->epoch;
		}
		memcpy(image + r->off + pieces[k].off, r->data + pieces[k].off, BLOCK);
		while (acknowledged < w->ncommits && acked[acknowledged + 1] <= r->epoch)
			acknowledged++;
		for (mode = 0; mode < 2; mode++) {
			struct fixture c = f;
			struct listing l;
			int r2;

			cut_fd = open(cut_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
			if (cut_fd < 0 || ftruncate(cut_fd, (off_t)f.s.cow_size))
				abort();
			if (mode == 0) {
				if (pwrite(cut_fd, image, meta, 0) != (ssize_t)meta)
					abort();
			} else {
				if (pwrite(cut_fd, epoch_image, meta, 0) != (ssize_t)meta ||
				    pwrite(cut_fd, r->data + pieces[k].off, BLOCK,
					   (off_t)(r->off + pieces[k].off)) != BLOCK)
					abort();
			}
			c.s.priv = NULL;
			c.s.cow_fd = cut_fd;
			r2 = P->open(&c.s);
			cuts++;
			if (r2) {
				if (failures++ < 5)
					CHECK(0, "%s: cut at block %zu (%s): open: %s", w->name, k,
					      mode ? "alone" : "prefix", c.s.error);
				close(cut_fd);
				continue;
			}
			l = list(&c);
			if (l.wrong || (l.n != cum[acknowledged] &&
					(acknowledged == w->ncommits || l.n != cum[acknowledged + 1]))) {
				if (failures++ < 5)
					CHECK(0, "%s: cut at block %zu (%s): %llu mappings, want %llu or %llu%s",
					      w->name, k, mode ? "alone" : "prefix", (unsigned long long)l.n,
					      (unsigned long long)cum[acknowledged],
					      (unsigned long long)cum[acknowledged + (acknowledged < w->ncommits)],
					      l.wrong ? " (a wrong one among them)" : "");
			}
			/* The store goes on: a new commit, then everything again. */
			r2 = commit_chunks(&c, LATER, 300);
			P->close(&c.s);
			if (!r2)
				r2 = P->open(&c.s);
			if (r2 || list(&c).n != l.n + 300 || list(&c).wrong) {
				if (failures++ < 5)
					CHECK(0, "%s: cut at block %zu (%s): after a new commit: %d %s",
					      w->name, k, mode ? "alone" : "prefix", r2, c.s.error);
			}
			P->close(&c.s);
			close(cut_fd);
		}
	}
	CHECK(failures == 0, "%s: %zu of %zu cuts went wrong", w->name, failures, cuts);
	unlink(cut_path);
	record_forget();
	teardown(&f);
	free(before);
	free(image);
	free(epoch_image);
	free(pieces);
	free(cum);
	free(acked);
	return cuts;
}

/*
 * A 16 MiB device has a 16-block ring; a checkpoint begins when half of it
 * is used and is due when half of the room left is.  W1: thirty one-block
 * commits wrap the ring and finish three checkpoints on pace; a two-block
 * commit begins one, and a nine-block commit soon after cannot wait for
 * it.  W2: a ten-block commit with seven blocks of the ring used and no
 * checkpoint under way is too large for the journal: a whole checkpoint.
 */
static void test_power_cuts(void)
{
	uint64_t w1[44], w2[42];
	size_t i, cuts;

	TEST("power cuts at every journal and checkpoint block");
	for (i = 0; i < 30; i++)
		w1[i] = w2[i] = 1 + i % 11;
	w1[30] = 300;
	w1[31] = 1;
	w1[32] = 8 * 255 + 1;
	for (i = 33; i < 44; i++)
		w1[i] = 1 + i % 5;
	w2[30] = 4;
	w2[31] = 9 * 255 + 1;
	for (i = 32; i < 42; i++)
		w2[i] = 1 + i % 5;
	cuts = cut_everywhere(&(struct workload){ "w1", w1, 44 });
	cuts += cut_everywhere(&(struct workload){ "w2", w2, 42 });
	CHECK(cuts > 200, "%zu cuts", cuts);
}

/* ---- a torn commit over a torn commit -------------------------------------- */

/*
 * B, one journal block, torn: only its first sector landed over a block of
 * the ring's last turn.  It is ignored, and its slots are given again, to
 * B'.  Had B' the same seq and commit number, a tear of B''s block the
 * other way (all but its first sector: zeros past B's few records, as in
 * B) would complete B, and replay would map B's chunks onto B''s data.
 */
static void test_torn_twice(void)
{
	struct fixture f;
	struct listing l;
	char old[BLOCK], now[BLOCK], cut[BLOCK];
	uint64_t at, i;
	int ok = 1;

	TEST("a torn commit over a torn commit: never completed, never applied");
	setup(&f, "twice", 16 << 20);
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	/* 18 commits of 200 records: every ring block has data in every sector. */
	for (i = 0; i < 18 && ok; i++)
		ok = commit_chunks(&f, i * 200, 200) == 0;
	CHECK(ok, "%s", f.s.error);
	at = field(f.s.cow_fd, H_JSTART, 8) * 512 + 19 % field(f.s.cow_fd, H_JBLOCKS, 8) * BLOCK;
	CHECK(pread(f.s.cow_fd, old, BLOCK, (off_t)at) == BLOCK, "the block B will replace");
	CHECK(commit_chunks(&f, LATER, 8) == 0, "B (seq 19): %s", f.s.error);
	CHECK(pread(f.s.cow_fd, now, BLOCK, (off_t)at) == BLOCK, "B's block");
	memcpy(cut, old, BLOCK);
	memcpy(cut, now, 512);
	CHECK(pwrite(f.s.cow_fd, cut, BLOCK, (off_t)at) == BLOCK, "B torn");
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0, "%s", f.s.error);
	l = list(&f);
	CHECK(l.n == 3600 && !l.wrong, "B ignored: %llu mappings", (unsigned long long)l.n);

	memcpy(old, cut, BLOCK);
	CHECK(commit_chunks(&f, LATER + 100, 8) == 0, "B': %s", f.s.error);
	CHECK(pread(f.s.cow_fd, now, BLOCK, (off_t)at) == BLOCK, "the block after B'");
	memcpy(cut, now, BLOCK);
	memcpy(cut, old, 512);
	CHECK(pwrite(f.s.cow_fd, cut, BLOCK, (off_t)at) == BLOCK, "B' torn the other way");
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0, "%s", f.s.error);
	l = list(&f);
	CHECK((l.n == 3600 || l.n == 3608) && !l.wrong, "%llu mappings", (unsigned long long)l.n);
	CHECK(!list_has(&f, LATER), "B's chunks, never acknowledged, are not mapped onto B''s slots");
	teardown(&f);
}

/* ---- bytes per commit ------------------------------------------------------ */

static void test_paced_checkpoints(void)
{
	struct fixture f;
	uint64_t ckpt[2], cblocks, i, worst = 0, ckpt_total = 0;
	int ok = 1;
	size_t k;

	TEST("no commit writes more than its share of a checkpoint");
	/* 64 MiB: a 64-block ring, 63-block checkpoints once 15000 chunks are mapped. */
	setup(&f, "paced", 64 << 20);
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	ckpt[0] = field(f.s.cow_fd, H_CKPT0, 8) * 512;
	ckpt[1] = field(f.s.cow_fd, H_CKPT1, 8) * 512;
	cblocks = field(f.s.cow_fd, H_CBLOCKS, 8);
	for (i = 0; i < 60 && ok; i++)
		ok = commit_chunks(&f, i * 250, 250) == 0;
	for (i = 0; i < 300 && ok; i++) {
		int start = epoch;
		uint64_t bytes = 0;

		record_start(f.s.cow_fd);
		ok = commit_chunks(&f, 15000 + i, 1) == 0;
		record_stop();
		for (k = 0; k < nrecs; k++)
			if ((recs[k].off >= ckpt[0] && recs[k].off < ckpt[0] + cblocks * BLOCK) ||
			    (recs[k].off >= ckpt[1] && recs[k].off < ckpt[1] + cblocks * BLOCK))
				bytes += recs[k].len;
		CHECK(epoch == start + 1, "one sync per commit: %d", epoch - start);
		worst = bytes > worst ? bytes : worst;
		ckpt_total += bytes;
		record_forget();
	}
	CHECK(ok, "commits: %s", f.s.error);
	CHECK(ckpt_total >= 4 * 60 * BLOCK, "300 one-block commits write several checkpoints: %llu bytes",
	      (unsigned long long)ckpt_total);
	CHECK(worst <= 8 * BLOCK, "at most 8 of %llu checkpoint blocks in one commit: %llu bytes",
	      (unsigned long long)cblocks, (unsigned long long)worst);
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0 && list(&f).n == 15300 && !list(&f).wrong, "all mappings back: %s",
	      f.s.error);
	teardown(&f);
}

/* ---- a version 2 store ----------------------------------------------------- */

/* A journal block (the same in every version) of one record, chunk in slot chunk, LAST. */
static void forge_block(struct fixture *f, uint64_t pos, uint64_t seq, uint64_t commit, uint64_t chunk)
{
	unsigned char b[BLOCK] = { 0 };
	uint32_t v32, id = (uint32_t)field(f->s.cow_fd, H_STORE_ID, 4);
	uint64_t v64;

	v32 = htole32(0x4c4e524aU);
	memcpy(b, &v32, 4);
	v64 = htole64(seq);
	memcpy(b + 8, &v64, 8);
	v64 = htole64(commit);
	memcpy(b + 16, &v64, 8);
	v32 = htole32(1);
	memcpy(b + 24, &v32, 4);	/* one record */
	memcpy(b + 28, &v32, 4);	/* LAST */
	v64 = htole64(chunk);
	memcpy(b + 32, &v64, 8);
	memcpy(b + 40, &v64, 8);	/* slot = chunk */
	v32 = htole32(crc32c(id, b, BLOCK));
	memcpy(b + 4, &v32, 4);
	if (pwrite(f->s.cow_fd, b, BLOCK, (off_t)(field(f->s.cow_fd, H_JSTART, 8) * 512 + pos * BLOCK)) != BLOCK)
		abort();
}

static void test_version_2(void)
{
	unsigned char hdr[104], junk[BLOCK], head[BLOCK];
	struct cow_store_info info;
	struct fixture f;
	uint32_t crc;
	uint64_t i;
	int ok = 1;

	TEST("a version 2 store opens as it is and moves to the ring at its first commit");
	setup(&f, "v2", 16 << 20);
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	/* The empty checkpoint has seq 0, commit 1: then three commits from block 0. */
	forge_block(&f, 0, 1, 2, 0);
	forge_block(&f, 1, 2, 3, 1);
	forge_block(&f, 2, 3, 4, 2);
	memset(junk, 0x5a, sizeof(junk));
	CHECK(pwrite(f.s.cow_fd, junk, BLOCK, (off_t)(field(f.s.cow_fd, H_JSTART, 8) * 512 + 3 * BLOCK)) == BLOCK,
	      "a torn end");
	CHECK(pread(f.s.cow_fd, hdr, sizeof(hdr), 0) == sizeof(hdr), "read the header");
	hdr[H_VERSION] = 2;
	memset(hdr + 96, 0, 4);
	crc = htole32(crc32c(0, hdr, sizeof(hdr)));
	memcpy(hdr + 96, &crc, 4);
	CHECK(pwrite(f.s.cow_fd, hdr, sizeof(hdr), 0) == sizeof(hdr), "write a version 2 header");
	CHECK(pwrite(f.s.cow_fd, junk, 64, 104) == 64, "bytes past a version 2 header are not its own");

	CHECK(P->open(&f.s) == 0, "%s", f.s.error);
	CHECK(list(&f).n == 3 && !list(&f).wrong, "three mappings from the linear journal");
	CHECK(field(f.s.cow_fd, H_VERSION, 4) == 2, "open alone does not change the version");
	f.next_chunk = 3;
	CHECK(commit_chunks(&f, 3, 1) == 0, "first commit: %s", f.s.error);
	CHECK(field(f.s.cow_fd, H_VERSION, 4) == 4, "the first commit moves it to version 4");
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0, "reopened at once: %s", f.s.error);
	if (!f.s.priv) {
		teardown(&f);
		return;
	}
	CHECK(list(&f).n == 4 && !list(&f).wrong, "four mappings");
	CHECK(pread(f.s.cow_fd, head, sizeof(head), 0) == sizeof(head) &&
	      P->inspect(head, sizeof(head), &info) == 0 && !info.base_id[0],
	      "no label from the bytes past the old header: '%s'", info.base_id);
	for (i = 4; i < 44 && ok; i++)
		ok = commit_chunks(&f, i, 1) == 0;
	CHECK(ok, "40 commits around the ring: %s", f.s.error);
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0, "%s", f.s.error);
	CHECK(list(&f).n == 44 && !list(&f).wrong, "all 44 mappings in their slots");
	teardown(&f);
}

/* ---- a failed write, then the commit again ---------------------------------- */

static void test_upgrade_retried(void)
{
	unsigned char hdr[168];
	struct fixture f;
	uint32_t crc;

	TEST("a version 3 store whose new header could not be written: the retry");
	setup(&f, "retry", 16 << 20);
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	CHECK(pread(f.s.cow_fd, hdr, sizeof(hdr), 0) == sizeof(hdr), "read the header");
	hdr[H_VERSION] = 3;
	memset(hdr + 96, 0, 4);
	crc = htole32(crc32c(0, hdr, sizeof(hdr)));
	memcpy(hdr + 96, &crc, 4);
	CHECK(pwrite(f.s.cow_fd, hdr, sizeof(hdr), 0) == sizeof(hdr), "a version 3 header");
	CHECK(P->open(&f.s) == 0, "%s", f.s.error);
	record_fail_off = 0;
	CHECK(commit_chunks(&f, 0, 5) != 0, "the header write fails: %s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "the commit again: %s", f.s.error);
	CHECK(commit_chunks(&f, 5, 5) == 0 && commit_chunks(&f, 10, 5) == 0, "%s", f.s.error);
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0, "%s", f.s.error);
	if (f.s.priv)
		CHECK(list(&f).n == 15 && !list(&f).wrong, "the 15 acknowledged mappings: %llu",
		      (unsigned long long)list(&f).n);
	teardown(&f);
}

/* ---- a checkpoint that cannot be read --------------------------------------- */

/* Reads at this offset fail once with EIO. */
static uint64_t fail_read_off = UINT64_MAX;

int __real_pread_full(int fd, void *buf, size_t len, uint64_t off);
int __wrap_pread_full(int fd, void *buf, size_t len, uint64_t off);

int __wrap_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	if (off == fail_read_off) {
		fail_read_off = UINT64_MAX;
		return -EIO;
	}
	return __real_pread_full(fd, buf, len, off);
}

static void test_unreadable_checkpoint(void)
{
	struct fixture f;
	int i, r;

	TEST("a checkpoint that cannot be read fails the open (never the older one instead)");
	for (i = 0; i < 2; i++) {
		setup(&f, "unreadable", 16 << 20);
		CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
		CHECK(commit_chunks(&f, 0, 3) == 0, "%s", f.s.error);
		P->close(&f.s);
		fail_read_off = field(f.s.cow_fd, i ? H_CKPT1 : H_CKPT0, 8) * 512;
		r = P->open(&f.s);
		CHECK(r == -EIO && strstr(f.s.error, "cannot read a checkpoint"), "area %d: %d %s", i, r,
		      f.s.error);
		fail_read_off = UINT64_MAX;
		teardown(&f);
	}
}

/* ---- crafted ring blocks ---------------------------------------------------- */

static void test_crafted_blocks(void)
{
	struct fixture f;
	uint64_t ring;

	TEST("crafted ring blocks: one far ahead harms nothing, one out of place is refused");
	setup(&f, "crafted", 16 << 20);
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	ring = field(f.s.cow_fd, H_JBLOCKS, 8);
	CHECK(commit_chunks(&f, 0, 1) == 0 && commit_chunks(&f, 1, 1) == 0 &&
	      commit_chunks(&f, 2, 1) == 0, "seqs 1 to 3, commits 2 to 4: %s", f.s.error);
	P->close(&f.s);
	forge_block(&f, 103 % ring, 103, 5, LATER);
	CHECK(P->open(&f.s) == 0, "a block 100 seqs ahead: %s", f.s.error);
	CHECK(f.s.priv && list(&f).n == 3, "is not applied");
	CHECK(f.s.priv && commit_chunks(&f, 3, 1) == 0, "%s", f.s.error);
	P->close(&f.s);
	CHECK(P->open(&f.s) == 0 && list(&f).n == 4 && !list(&f).wrong, "nothing lost: %s", f.s.error);
	P->close(&f.s);
	forge_block(&f, 7, 104, 9, LATER);
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "journal block 7 holds seq 104"),
	      "out of place: %s", f.s.error);
	teardown(&f);
}

int main(void)
{
	P = cow_plugin_init();
	if (!mkdtemp(dir))
		return 2;
	test_power_cuts();
	test_torn_twice();
	test_paced_checkpoints();
	test_version_2();
	test_upgrade_retried();
	test_crafted_blocks();
	test_unreadable_checkpoint();
	rmdir(dir);
	return check_done("test-packed-journal");
}
