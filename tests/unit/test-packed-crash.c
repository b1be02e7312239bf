// SPDX-License-Identifier: GPL-2.0-only
/*
 * The packed store through many lives, each ended by a power cut: a model
 * checker with fixed seeds (the same lives on every run).
 *
 * A life opens the store, makes random commits (1 to 4500 mappings, so
 * that the journal ring wraps, checkpoints go out a piece at a time and
 * whole), sometimes with one write or sync failing and the commit tried
 * again, and every write is recorded.  Then the power is cut at a random
 * write: writes of the synced steps before it landed; of its own step,
 * each 512-byte sector holds what it held or any version written to it
 * up to the cut, independently.  The cut image must open and hold exactly
 * the first N mappings made (in order), where N is what the last commit
 * acknowledged before the cut left, or what one in flight would have
 * left.  The next life starts from the cut image, so that torn ends are
 * met by the commits after them, crash after crash.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);
static const struct cow_plugin *P;
static char dir[] = "/tmp/test-packed-crash.XXXXXX";

#define SECTOR 512
#define FAILED (1 << 30)	/* acknowledged at this epoch: never */

/* ---- writes and syncs of the store, recorded; one of them may fail ------- */

struct write {
	uint64_t off;
	size_t len;
	char *data;
	int epoch;	/* syncs before it */
};

static struct write *writes;
static size_t nwrites, maxwrites;
static int tracked = -1, epoch;
static long fail_write = -1, fail_sync = -1, write_no, sync_no;
static uint64_t meta;	/* bytes of metadata: everything the plugin writes */

int __real_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int __wrap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

int __wrap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	if (fd != tracked)
		return __real_pwrite_full(fd, buf, len, off);
	if (write_no++ == fail_write)
		return -EIO;	/* nothing written */
	if (off % SECTOR || len % SECTOR || off + len > meta ||
	    array_reserve(&writes, &maxwrites, nwrites, sizeof(*writes)))
		abort();
	writes[nwrites].data = malloc(len);
	if (!writes[nwrites].data)
		abort();
	memcpy(writes[nwrites].data, buf, len);
	writes[nwrites].off = off;
	writes[nwrites].len = len;
	writes[nwrites].epoch = epoch;
	nwrites++;
	return __real_pwrite_full(fd, buf, len, off);
}

int __wrap_fdatasync(int fd)
{
	if (fd == tracked) {
		if (sync_no++ == fail_sync) {
			errno = EIO;	/* what was written may land, or not */
			return -1;
		}
		epoch++;
	}
	return __real_fdatasync(fd);
}

static void forget_writes(void)
{
	while (nwrites)
		free(writes[--nwrites].data);
}

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- the model: every mapping made, in order ------------------------------ */

struct mapping {
	uint64_t chunk, sector;
};

static struct mapping *made;
static size_t nmade, maxmade;

static int cmp_chunk(const void *a, const void *b)
{
	const struct mapping *x = a, *y = b;

	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

struct held {
	struct mapping *m;
	size_t n, max;
};

static int hold_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct held *h = ctx;

	if (array_reserve(&h->m, &h->max, h->n, sizeof(*h->m)))
		abort();
	h->m[h->n++] = (struct mapping){ chunk, sector };
	return 0;
}

/* The store holds exactly made[0, n) (for_each_mapping: in chunk order). */
static int holds_first(const struct held *h, size_t n)
{
	struct mapping *want;
	int same;

	if (h->n != n)
		return 0;
	want = malloc((n ? n : 1) * sizeof(*want));
	if (!want)
		abort();
	memcpy(want, made, n * sizeof(*want));
	qsort(want, n, sizeof(*want), cmp_chunk);
	same = !n || !memcmp(want, h->m, n * sizeof(*want));
	free(want);
	return same;
}

/* ---- lives ------------------------------------------------------------------ */

struct config {
	const char *name;
	uint64_t cow_size;
	int faults;
	uint64_t seed;
	int lives;
};

/* The cut at write k of a life, onto @img (the durable image before it). */
static void cut_at(size_t k, char *img)
{
	size_t i, s;

	for (i = 0; i < nwrites && writes[i].epoch < writes[k].epoch; i++)
		memcpy(img + writes[i].off, writes[i].data, writes[i].len);
	for (; i <= k; i++)
		for (s = 0; s < writes[i].len; s += SECTOR)
			if (rnd() & 1)
				memcpy(img + writes[i].off + s, writes[i].data + s, SECTOR);
}

static void run(const struct config *c)
{
	struct cow_store s = { 0 };
	char base[256], cow[256], buf[4096], *media;
	uint64_t chunk_no = 1, hdr[16], off, slots;
	int life, failures = 0, stores = 1;

	TEST(c->name);
	rng = c->seed;
	snprintf(base, sizeof(base), "%s/%s.base", dir, c->name);
	snprintf(cow, sizeof(cow), "%s/%s.cow", dir, c->name);
	s.base_fd = open(base, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (off = 0; off < (4 << 20); off += sizeof(buf)) {
		memset(buf, (int)(off >> 12) & 0xff, sizeof(buf));
		if (pwrite(s.base_fd, buf, sizeof(buf), (off_t)off) != sizeof(buf))
			abort();
	}
	s.base_size = 4 << 20;
	s.chunk_sectors = 8;
	s.base_name = base;
	s.cow_fd = open(cow, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (s.cow_fd < 0 || ftruncate(s.cow_fd, (off_t)c->cow_size))
		abort();
	s.cow_size = c->cow_size;
	CHECK(P->create(&s) == 0, "%s: create: %s", c->name, s.error);
	if (pread(s.cow_fd, hdr, sizeof(hdr), 0) != sizeof(hdr))
		abort();
	meta = le64toh(hdr[10]) * 512;	/* data_start */
	slots = (c->cow_size - meta) / 4096;
	media = malloc(meta);
	if (!media || pread(s.cow_fd, media, meta, 0) != (ssize_t)meta)
		abort();
	nmade = 0;

	for (life = 0; life < c->lives && failures < 3; life++) {
		size_t cum[64], ncalls = 0, k, i, want[3], nwant = 0;
		int acked[64], commits = 1 + (int)(rnd() % 8), ek, ok;
		struct held h = { 0 };
		size_t start = nmade;	/* durable when the life began */
		long last = -1;

		tracked = s.cow_fd;
		epoch = 0;
		write_no = sync_no = 0;
		fail_write = fail_sync = -1;
		if (P->open(&s)) {
			CHECK(0, "%s: life %d: open: %s", c->name, life, s.error);
			break;
		}
		if (c->faults && rnd() % 3 == 0) {
			if (rnd() & 1)
				fail_write = (long)(rnd() % 24);
			else
				fail_sync = sync_no + (long)(rnd() % 16);
		}
		while (commits-- && ncalls + 2 <= sizeof(cum) / sizeof(cum[0])) {
			uint64_t pick = rnd() % 100, n, j, sector;
			int valid, r;

			/* Mostly small; one in ten larger than the ring (16 blocks, 255 each). */
			n = pick < 60 ? 1 + rnd() % 30 : pick < 90 ? 1 + rnd() % 300 : 1 + rnd() % (slots / 6);
			if (nmade + n + 64 > slots)
				break;
			for (j = 0; j < n; j++) {
				uint64_t chunk = chunk_no++ * 0x9e3779b97f4a7c15ULL >> 24;

				if (P->locate(&s, chunk, &sector, &valid) || valid || P->mark(&s, chunk, sector))
					abort();
				if (array_reserve(&made, &maxmade, nmade, sizeof(*made)))
					abort();
				made[nmade++] = (struct mapping){ chunk, sector };
			}
			r = P->commit(&s);
			cum[ncalls] = nmade;
			acked[ncalls++] = r ? FAILED : epoch;
			if (r) {	/* as the API allows: the commit again */
				r = P->commit(&s);
				cum[ncalls] = nmade;
				acked[ncalls++] = r ? FAILED : epoch;
				if (r)
					break;
			}
		}
		tracked = -1;
		P->close(&s);

		/* The cut, and the mappings it may leave. */
		k = rnd() % (nwrites + 1);
		ek = k < nwrites ? writes[k].epoch : epoch;
		if (k < nwrites) {
			cut_at(k, media);
		} else {
			for (i = 0; i < nwrites; i++)
				memcpy(media + writes[i].off, writes[i].data, writes[i].len);
		}
		for (i = 0; i < ncalls; i++)
			if (acked[i] <= ek)
				last = (long)i;
		want[nwant++] = last >= 0 ? cum[last] : start;
		if (last + 1 < (long)ncalls)
			want[nwant++] = cum[last + 1];
		if (last + 2 < (long)ncalls && acked[last + 1] == FAILED)
			want[nwant++] = cum[last + 2];
		if (pwrite(s.cow_fd, media, meta, 0) != (ssize_t)meta)
			abort();
		forget_writes();
		if (P->open(&s)) {
			CHECK(0, "%s: life %d: the cut image does not open: %s", c->name, life, s.error);
			failures++;
			break;
		}
		P->for_each_mapping(&s, hold_one, &h);
		P->close(&s);
		ok = 0;
		for (i = 0; i < nwant && !ok; i++)
			ok = holds_first(&h, want[i]);
		if (!ok) {
			CHECK(0, "%s: life %d: %zu mappings after the cut, not the first %zu or %zu made",
			      c->name, life, h.n, want[0], want[nwant - 1]);
			failures++;
		}
		nmade = h.n;	/* what survived: the next life goes on from it */
		free(h.m);
		if (nmade + slots / 3 > slots) {	/* nearly full: a new store */
			CHECK(P->create(&s) == 0, "%s: create: %s", c->name, s.error);
			if (pread(s.cow_fd, media, meta, 0) != (ssize_t)meta)
				abort();
			nmade = 0;
			stores++;
		}
	}
	CHECK(life == c->lives, "%s: %d of %d lives", c->name, life, c->lives);
	if (getenv("VERBOSE"))
		printf("%s: %d lives in %d stores\n", c->name, life, stores);
	free(media);
	close(s.base_fd);
	close(s.cow_fd);
	unlink(base);
	unlink(cow);
}

int main(void)
{
	static const struct config configs[] = {
		{ "16 MiB store (16-block ring), power cuts", 16 << 20, 0, 88172645463325252ULL, 400 },
		{ "16 MiB store, power cuts and failed writes or syncs", 16 << 20, 1, 0x2545f4914f6cdd1dULL, 400 },
		{ "64 MiB store (64-block ring), power cuts and failures", 64 << 20, 1, 0x9e3779b97f4a7c15ULL, 200 },
	};
	size_t i;
	int times;

	P = cow_plugin_init();
	if (!mkdtemp(dir))
		return 2;
	/* CRASH_LIVES=N: N times the lives, with other seeds (make check: 1). */
	times = getenv("CRASH_LIVES") ? atoi(getenv("CRASH_LIVES")) : 1;
	for (i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
		struct config c = configs[i];

		c.lives *= times > 0 ? times : 1;
		c.seed += times > 1 ? (uint64_t)getpid() : 0;
		run(&c);
	}
	free(made);
	free(writes);
	rmdir(dir);
	return check_done("test-packed-crash");
}
