// SPDX-License-Identifier: GPL-2.0-only
/*
 * The packed store on regular files: allocation order, commit and replay,
 * a torn last commit (ignored), a damaged journal (refused), another base
 * (refused), a full store, and the journal rolling over into checkpoints.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "runs.h"
#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);
static const struct cow_plugin *P;
static char dir[] = "/tmp/test-packed.XXXXXX";

struct fixture {
	struct cow_store s;
	char base[256], cow[256];
};

static void setup(struct fixture *f, uint64_t base_size, uint64_t cow_size, const char *name)
{
	char buf[4096];
	uint64_t off;
	int fd;

	memset(f, 0, sizeof(*f));
	snprintf(f->base, sizeof(f->base), "%s/%s.base", dir, name);
	snprintf(f->cow, sizeof(f->cow), "%s/%s.cow", dir, name);
	fd = open(f->base, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (off = 0; off < base_size; off += sizeof(buf)) {
		memset(buf, (int)(off >> 12) & 0xff, sizeof(buf));
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) != sizeof(buf))
			abort();
	}
	f->s.base_fd = fd;
	f->s.cow_fd = open(f->cow, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ftruncate(f->s.cow_fd, (off_t)cow_size))
		abort();
	f->s.base_size = base_size;
	f->s.cow_size = cow_size;
	f->s.cow_is_file = 0; /* behave as on a block device of that size */
	f->s.chunk_sectors = 128;
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

static int reopen(struct fixture *f)
{
	P->close(&f->s);
	return P->open(&f->s);
}

/* Fault, copy (pretend) and mark @chunk; returns its sector. */
static uint64_t map_chunk(struct fixture *f, uint64_t chunk)
{
	uint64_t sector = 0;
	int valid;

	if (P->locate(&f->s, chunk, &sector, &valid) || P->mark(&f->s, chunk, sector))
		return 0;
	return sector;
}

struct seen {
	uint64_t n, chunk[4096], sector[4096];
};

static int collect(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct seen *s = ctx;

	if (s->n < 4096) {
		s->chunk[s->n] = chunk;
		s->sector[s->n] = sector;
	}
	s->n++;
	return 0;
}

static void test_round_trip(void)
{
	struct fixture f;
	struct seen *seen = calloc(1, sizeof(*seen));
	uint64_t a, b, c, sector;
	int valid;

	TEST("allocation order, commit, replay");
	setup(&f, 64 << 20, 16 << 20, "rt");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	CHECK(P->data_phase(&f.s) == 0, "data chunk aligned");
	a = map_chunk(&f, 100);
	b = map_chunk(&f, 7);
	c = map_chunk(&f, 101);
	CHECK(a && b == a + 128 && c == b + 128, "slots in allocation order: %llu %llu %llu",
	      (unsigned long long)a, (unsigned long long)b, (unsigned long long)c);
	CHECK(a % 128 == 0, "chunk-aligned data");
	CHECK(P->locate(&f.s, 7, &sector, &valid) == 0 && valid && sector == b, "mapped chunk is valid");
	CHECK(P->mark(&f.s, 7, b) == 0, "a second mark of the same place is harmless");
	CHECK(P->mark(&f.s, 7, c) == -EEXIST, "a mark elsewhere is refused");
	CHECK(P->mark(&f.s, 9, a + 5) == -EINVAL, "a mark off the slot grid is refused");
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	P->for_each_mapping(&f.s, collect, seen);
	CHECK(seen->n == 0, "nothing survives without a commit: %llu", (unsigned long long)seen->n);
	a = map_chunk(&f, 100);
	b = map_chunk(&f, 7);
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	seen->n = 0;
	P->for_each_mapping(&f.s, collect, seen);
	CHECK(seen->n == 2 && seen->chunk[0] == 7 && seen->sector[0] == b && seen->chunk[1] == 100 &&
	      seen->sector[1] == a, "committed mappings come back in chunk order");
	CHECK(map_chunk(&f, 5) == b + 128, "allocation goes on after the last used slot");
	CHECK(P->used_bytes(&f.s) == (b + 256) * 512, "used bytes");
	teardown(&f);
	free(seen);
}

/* Offsets of the journal from the header (little-endian host assumed). */
static uint64_t journal_start(struct fixture *f)
{
	uint64_t v = 0;

	if (pread(f->s.cow_fd, &v, 8, 40) != 8)
		abort();
	return v * 512;
}

static void test_torn_and_corrupt(void)
{
	struct fixture f;
	struct seen *seen = calloc(1, sizeof(*seen));
	char junk[4096];
	uint64_t j;

	TEST("torn last commit ignored, damaged journal refused");
	setup(&f, 64 << 20, 16 << 20, "torn");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	map_chunk(&f, 1);
	CHECK(P->commit(&f.s) == 0, "commit 1");
	map_chunk(&f, 2);
	CHECK(P->commit(&f.s) == 0, "commit 2");
	map_chunk(&f, 3);
	CHECK(P->commit(&f.s) == 0, "commit 3");
	j = journal_start(&f);
	/* Tear the last commit (seq 3, ring block 3): it was never acknowledged. */
	memset(junk, 0x5a, sizeof(junk));
	CHECK(pwrite(f.s.cow_fd, junk, 512, (off_t)(j + 3 * 4096 + 1024)) == 512, "tear");
	CHECK(reopen(&f) == 0, "a torn last commit is not corruption: %s", f.s.error);
	P->for_each_mapping(&f.s, collect, seen);
	CHECK(seen->n == 2 && seen->chunk[0] == 1 && seen->chunk[1] == 2, "commits 1 and 2 survive: %llu",
	      (unsigned long long)seen->n);
	/* New commits after the torn one are found, the torn one stays dead. */
	map_chunk(&f, 4);
	CHECK(P->commit(&f.s) == 0, "commit after the tear");
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	seen->n = 0;
	P->for_each_mapping(&f.s, collect, seen);
	CHECK(seen->n == 3 && seen->chunk[2] == 4, "1, 2, 4: %llu", (unsigned long long)seen->n);
	/*
	 * Commit 4 was a checkpoint (after a torn end): the journal goes on
	 * at seq 3 and 4.  Damage seq 3: a later commit exists, so this is
	 * corruption.
	 */
	map_chunk(&f, 5);
	CHECK(P->commit(&f.s) == 0, "commit at seq 3");
	map_chunk(&f, 6);
	CHECK(P->commit(&f.s) == 0, "commit at seq 4");
	CHECK(pwrite(f.s.cow_fd, junk, 512, (off_t)(j + 3 * 4096 + 1024)) == 512, "damage");
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "corrupt"), "damaged journal: %s", f.s.error);
	teardown(&f);
	free(seen);
}

static void test_refusals(void)
{
	struct fixture f;
	char byte = 0x42;

	TEST("another base, another chunk size, a bad header");
	setup(&f, 64 << 20, 16 << 20, "ref");
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	f.s.base_size = 32 << 20;
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "base of"), "size: %s", f.s.error);
	f.s.base_size = 64 << 20;
	CHECK(pwrite(f.s.base_fd, &byte, 1, 1000) == 1, "change the base");
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "another base"), "content: %s", f.s.error);
	byte = 0;
	CHECK(pwrite(f.s.base_fd, &byte, 1, 1000) == 1, "restore the base");
	CHECK(P->open(&f.s) == 0, "restored: %s", f.s.error);
	P->close(&f.s);
	f.s.chunk_sectors = 64;
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "chunks"), "chunk size: %s", f.s.error);
	f.s.chunk_sectors = 128;
	byte = 0x42;
	CHECK(pwrite(f.s.cow_fd, &byte, 1, 20) == 1, "damage the header");
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "header checksum"), "header: %s", f.s.error);
	teardown(&f);

	setup(&f, 64 << 20, 64 << 10, "tiny");
	CHECK(P->create(&f.s) == -ENOSPC && strstr(f.s.error, "too small"), "tiny device: %s", f.s.error);
	teardown(&f);
}

/*
 * Set the 64-bit little-endian header field at @off and give the header a
 * valid checksum again, as a crafted file would.
 */
static void forge_header(struct fixture *f, size_t off, uint64_t value)
{
	unsigned char h[168];	/* the checksummed bytes of version 3 and later */
	uint32_t crc;

	if (pread(f->s.cow_fd, h, sizeof(h), 0) != sizeof(h))
		abort();
	value = htole64(value);
	memcpy(h + off, &value, 8);
	memset(h + 96, 0, 4);
	crc = htole32(crc32c(0, h, sizeof(h)));
	memcpy(h + 96, &crc, 4);
	if (pwrite(f->s.cow_fd, h, sizeof(h), 0) != sizeof(h))
		abort();
}

static void test_crafted_layout(void)
{
	/* Header offsets of the layout fields. */
	enum { JSTART = 40, JBLOCKS = 48, CKPT0 = 56, CKPT1 = 64, CBLOCKS = 72, DATA = 80, SLOTS = 88 };
	static const struct {
		const char *what;
		size_t off;
		uint64_t value;
	} cases[] = {
		{ "journal_blocks 2^60", JBLOCKS, 1ULL << 60 },
		{ "journal_blocks 0", JBLOCKS, 0 },
		{ "journal over the header", JSTART, 0 },
		{ "nr_slots 2^60", SLOTS, 1ULL << 60 },
		{ "nr_slots past the device", SLOTS, 1000000 },
		{ "data over the second checkpoint", DATA, 128 },
		{ "checkpoints at one place", CKPT1, 0 /* set below */ },
		{ "checkpoint too small for the slots", CBLOCKS, 0 },
		{ "checkpoint_blocks 2^62", CBLOCKS, 1ULL << 62 },
		{ "a start past 2^64 when added", CKPT0, ~0ULL - 7 },
	};
	struct fixture f;
	unsigned char orig[168];
	size_t i;

	TEST("a crafted header with a valid checksum: every layout field bounded");
	setup(&f, 16 << 20, 16 << 20, "crafted");
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	P->close(&f.s);
	if (pread(f.s.cow_fd, orig, sizeof(orig), 0) != sizeof(orig))
		abort();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t value = cases[i].value;
		int r;

		if (cases[i].off == CKPT1)
			memcpy(&value, orig + CKPT0, 8);
		else
			value = htole64(value);
		forge_header(&f, cases[i].off, le64toh(value));
		f.s.error[0] = 0;
		r = P->open(&f.s);
		CHECK(r == -EINVAL && strstr(f.s.error, "layout"), "%s: %d %s", cases[i].what, r,
		      f.s.error);
		if (!r)
			P->close(&f.s);
		if (pwrite(f.s.cow_fd, orig, sizeof(orig), 0) != sizeof(orig))
			abort();
	}
	CHECK(P->open(&f.s) == 0, "the untouched header opens: %s", f.s.error);
	teardown(&f);
}

static void test_full(void)
{
	struct fixture f;
	uint64_t sector, n = 0, before;
	int valid, r;

	TEST("full");
	setup(&f, 64 << 20, 4 << 20, "full");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	while ((r = P->locate(&f.s, n, &sector, &valid)) == 0 && n < 1000)
		CHECK(P->mark(&f.s, n++, sector) == 0, "mark");
	CHECK(r == -ENOSPC && strstr(f.s.error, "full"), "ENOSPC after %llu chunks: %s",
	      (unsigned long long)n, f.s.error);
	CHECK(n > 20 && n < 64, "most of 4 MiB is data: %llu slots", (unsigned long long)n);
	CHECK(P->commit(&f.s) == 0, "committing a full store: %s", f.s.error);
	before = n;
	CHECK(P->locate(&f.s, 3, &sector, &valid) == 0 && valid, "mapped chunks still locate");
	CHECK(reopen(&f) == 0 && P->locate(&f.s, before, &sector, &valid) == -ENOSPC, "still full");
	teardown(&f);
}

static void test_rollover(void)
{
	struct fixture f;
	struct seen *seen = calloc(1, sizeof(*seen));
	uint64_t i, ok = 1;

	TEST("journal rollover into checkpoints");
	/* 64 journal blocks: 100 one-record commits need a checkpoint. */
	setup(&f, 64 << 20, 64 << 20, "roll");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	for (i = 0; i < 100; i++) {
		map_chunk(&f, i * 3);
		if (P->commit(&f.s))
			ok = 0;
	}
	CHECK(ok, "100 commits: %s", f.s.error);
	for (i = 0; i < 600; i++)
		map_chunk(&f, 1000 + i);
	CHECK(P->commit(&f.s) == 0, "a commit larger than one block: %s", f.s.error);
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	if (f.s.priv)
		P->for_each_mapping(&f.s, collect, seen);
	CHECK(seen->n == 700, "all 700 mappings replayed: %llu", (unsigned long long)seen->n);
	for (i = 1; i < 100 && i < seen->n; i++)
		if (seen->chunk[i] != i * 3)
			ok = 0;
	CHECK(ok, "in chunk order");
	teardown(&f);
	free(seen);
}

static void test_crc32c(void)
{
	TEST("crc32c");
	CHECK(crc32c(0, "123456789", 9) == 0xe3069283, "check value");
}

/* A slot handed out whose chunk never reached a commit is a leak, found by check. */
static void test_reuse(void)
{
	struct fixture f;
	uint64_t lost, sector;
	int valid;

	TEST("a slot handed out but never committed is used again");
	setup(&f, 4 << 20, 4 << 20, "lk");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "create/open: %s", f.s.error);
	CHECK(map_chunk(&f, 1) && P->commit(&f.s) == 0, "map: %s", f.s.error);
	/* Chunk 2's slot is handed out, its copy "fails"; chunk 3 commits. */
	CHECK(P->locate(&f.s, 2, &lost, &valid) == 0, "locate: %s", f.s.error);
	CHECK(map_chunk(&f, 3) > lost && P->commit(&f.s) == 0, "map: %s", f.s.error);
	CHECK(reopen(&f) == 0, "reopen: %s", f.s.error);
	CHECK(P->locate(&f.s, 4, &sector, &valid) == 0 && sector == lost,
	      "the next daemon gives chunk 4 the lost slot: %llu, want %llu",
	      (unsigned long long)sector, (unsigned long long)lost);
	CHECK(P->locate(&f.s, 5, &sector, &valid) == 0 && sector > lost + 128,
	      "then the slot after chunk 3's: %llu", (unsigned long long)sector);
	teardown(&f);
}

/*
 * A base changed past its first MiB (a newer build of the same image) is
 * not the store's base; a version 1 store, made before the samples, still
 * opens with the first MiB checked only.
 */
static void test_base_samples(void)
{
	struct fixture f;
	struct pk_disk_header {
		char magic[8];
		uint32_t version;
	} __attribute__((packed)) *h;
	char hdr[104], block[256 << 10];
	uint32_t crc;

	TEST("a base changed past its first MiB is refused; version 1 stores still open");
	setup(&f, 8 << 20, 4 << 20, "samples");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "create/open: %s", f.s.error);
	P->close(&f.s);
	memset(block, 0x5a, sizeof(block));
	/* 256 KiB at 6 MiB: past the first MiB, between two samples or on one. */
	CHECK(pwrite(f.s.base_fd, block, sizeof(block), 6 << 20) == sizeof(block), "change the base");
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "samples"), "refused: %s", f.s.error);

	/* The same store as version 1 wrote it: no sample checksum. */
	CHECK(pread(f.s.cow_fd, hdr, sizeof(hdr), 0) == sizeof(hdr), "read the header");
	h = (struct pk_disk_header *)hdr;
	h->version = htole32(1);
	memset(hdr + 36, 0, 4);
	memset(hdr + 96, 0, 4);
	crc = htole32(crc32c(0, hdr, sizeof(hdr)));
	memcpy(hdr + 96, &crc, 4);
	CHECK(pwrite(f.s.cow_fd, hdr, sizeof(hdr), 0) == sizeof(hdr), "write a version 1 header");
	CHECK(P->open(&f.s) == 0, "a version 1 store opens: %s", f.s.error);
	teardown(&f);
}

/*
 * --base-id: a label given at create is recorded (covered by the header's
 * checksum) and reported by inspect().
 */
static void test_base_label(void)
{
	static char head[64 << 10];
	struct cow_store_info info;
	struct fixture f;
	uint32_t version;
	char byte;

	TEST("a base label is recorded, reported and checksummed");
	setup(&f, 1 << 20, 4 << 20, "label");
	CHECK(P->create(&f.s) == 0, "create: %s", f.s.error);
	CHECK(pread(f.s.cow_fd, &version, 4, 8) == 4 && le32toh(version) == 4,
	      "no label: version %u", le32toh(version));
	CHECK(pread(f.s.cow_fd, head, sizeof(head), 0) == sizeof(head) &&
	      P->inspect(head, sizeof(head), &info) == 0 && !info.base_id[0], "no label reported");

	f.s.base_id = "debian-12.8-gold";
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "create with a label: %s", f.s.error);
	P->close(&f.s);
	CHECK(pread(f.s.cow_fd, &version, 4, 8) == 4 && le32toh(version) == 4,
	      "labelled: version %u", le32toh(version));
	CHECK(pread(f.s.cow_fd, head, sizeof(head), 0) == sizeof(head) &&
	      P->inspect(head, sizeof(head), &info) == 0 &&
	      !strcmp(info.base_id, "debian-12.8-gold"), "label reported: '%s'", info.base_id);
	f.s.base_id = NULL;
	CHECK(P->open(&f.s) == 0, "opens without a label asked for: %s", f.s.error);
	P->close(&f.s);
	CHECK(pread(f.s.cow_fd, &byte, 1, 120) == 1, "read the label");
	byte ^= 1;
	CHECK(pwrite(f.s.cow_fd, &byte, 1, 120) == 1, "change the label");
	CHECK(P->open(&f.s) == -EINVAL && strstr(f.s.error, "checksum"), "refused: %s", f.s.error);

	f.s.base_id = "0123456789012345678901234567890123456789012345678901234567890123";
	CHECK(P->create(&f.s) == -EINVAL, "a 64-byte label is refused");
	f.s.base_id = NULL;
	teardown(&f);
}

/* cowd restarted with a copy in flight: its slot is never given again. */
static void test_hold(void)
{
	struct fixture f;
	uint64_t held = 0, sector = 0;
	int valid = 0;

	TEST("hold: a slot the kernel is filling is never given again");
	setup(&f, 4 << 20, 4 << 20, "hold");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "create/open: %s", f.s.error);
	CHECK(P->locate(&f.s, 5, &held, &valid) == 0, "the old cowd places chunk 5: %s", f.s.error);
	CHECK(reopen(&f) == 0, "the new cowd opens the store: %s", f.s.error);
	CHECK(P->hold(&f.s, 5, held) == 0, "%s", f.s.error);
	CHECK(P->locate(&f.s, 6, &sector, &valid) == 0 && sector != held,
	      "chunk 6 gets sector %llu, chunk 5's copy is filling %llu", (unsigned long long)sector,
	      (unsigned long long)held);
	CHECK(P->mark(&f.s, 5, held) == 0 && P->mark(&f.s, 6, sector) == 0 && P->commit(&f.s) == 0,
	      "%s", f.s.error);
	CHECK(P->hold(&f.s, 5, held + 1) == -EINVAL, "a location off the slot grid is refused");
	teardown(&f);
}

/*
 * grant: runs of fresh slots for chunks not known yet; locate() never
 * gives them again; a used one is recorded by mark(); unused ones are free
 * again in a new daemon (reopen); ungrant() takes the last run back; a
 * full store grants what is left, then ENOSPC.
 */
static void test_grant(void)
{
	struct fixture f;
	uint64_t g1, n1, g2, n2, sector = 0, used;
	int valid = 0;

	TEST("grant: runs of fresh slots, used ones marked, unused ones free again");
	setup(&f, 64 << 20, 4 << 20, "grant");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "create/open: %s", f.s.error);
	CHECK(P->grant(&f.s, 8, &g1, &n1) == 0 && n1 == 8, "grant 8: %s", f.s.error);
	CHECK(P->locate(&f.s, 40, &sector, &valid) == 0 && !valid && sector >= g1 + 8 * 128,
	      "locate after a grant: sector %llu, grant %llu+8", (unsigned long long)sector,
	      (unsigned long long)g1);
	CHECK(P->mark(&f.s, 40, sector) == 0, "%s", f.s.error);
	CHECK(P->grant(&f.s, 4, &g2, &n2) == 0 && n2 == 4 && g2 == sector + 128,
	      "the next run follows: %llu", (unsigned long long)g2);
	P->ungrant(&f.s, g2, n2);
	CHECK(P->grant(&f.s, 4, &sector, &n2) == 0 && sector == g2, "ungrant took the run back");
	/* The kernel uses the first three slots of the first run. */
	CHECK(P->mark(&f.s, 7, g1) == 0 && P->mark(&f.s, 3, g1 + 128) == 0 &&
	      P->mark(&f.s, 9, g1 + 256) == 0 && P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	CHECK(P->locate(&f.s, 7, &sector, &valid) == 0 && valid && sector == g1 &&
	      P->locate(&f.s, 9, &sector, &valid) == 0 && valid && sector == g1 + 256,
	      "granted slots used are mapped after a reopen");
	/* Free again: the 5 slots of the first run not used, then after 40's. */
	CHECK(P->grant(&f.s, 1000, &g2, &n2) == 0 && g2 == g1 + 3 * 128 && n2 == 5,
	      "a new daemon grants the unused slots first: %llu+%llu, want %llu+5",
	      (unsigned long long)g2, (unsigned long long)n2, (unsigned long long)(g1 + 3 * 128));
	CHECK(P->grant(&f.s, 1000, &g2, &n2) == 0 && g2 == g1 + 9 * 128,
	      "then the slots after chunk 40's: %llu", (unsigned long long)g2);
	/* Grants leave slots to locate(): a fault still finds one. */
	used = (g2 - g1) / 128 + n2;
	while (P->grant(&f.s, 1000, &sector, &n2) == 0)
		used += n2;
	CHECK(strstr(f.s.error, "full"), "grants stop short of a full store (%llu slots): %s",
	      (unsigned long long)used, f.s.error);
	CHECK(P->locate(&f.s, 50, &sector, &valid) == 0 && !valid,
	      "a fault still finds a slot: %s", f.s.error);
	teardown(&f);
}

/*
 * What cowd gives back to the host when the device is gone: the slots no
 * mapping uses (granted ones not used included), never a mapped slot nor
 * the header, journal and checkpoints before the data.  With holes there,
 * the store opens with its mappings and its data.
 */
static void test_unused(void)
{
	struct fixture f;
	struct runs r = { 0 };
	uint64_t g = 0, n = 0, a, i, total = 0;
	char buf[512], want[512];
	int fd, valid = 0;

	TEST("for_each_unused: every slot no mapping uses, nothing else");
	setup(&f, 64 << 20, 4 << 20, "unused");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "create/open: %s", f.s.error);
	CHECK(P->grant(&f.s, 8, &g, &n) == 0 && n == 8, "grant 8: %s", f.s.error);
	CHECK(P->mark(&f.s, 7, g) == 0 && P->mark(&f.s, 9, g + 2 * 128) == 0, "%s", f.s.error);
	a = map_chunk(&f, 40);
	memset(want, 0x5a, sizeof(want));
	CHECK(a && pwrite(f.s.cow_fd, want, sizeof(want), (off_t)(a * COW_SECTOR)) == sizeof(want) &&
	      P->commit(&f.s) == 0, "commit: %s", f.s.error);
	CHECK(P->for_each_unused(&f.s, collect_run, &r) == 0 && r.n == 3,
	      "3 runs (granted slot 1, slots 3-7, after chunk 40's): %llu", (unsigned long long)r.n);
	for (i = 0; i < r.n && i < 64; i++)
		total += r.count[i];
	CHECK(in_runs(&r, g + 128) && in_runs(&r, g + 3 * 128) && in_runs(&r, g + 7 * 128) &&
	      in_runs(&r, a + 128), "the granted slots not used, and the free ones, are reported");
	CHECK(!in_runs(&r, g) && !in_runs(&r, g + 2 * 128) && !in_runs(&r, a) && r.first[0] >= g,
	      "no mapped slot, nothing before the data area");
	CHECK(total % 128 == 0 && r.first[2] + r.count[2] <= (4 << 20) / COW_SECTOR,
	      "whole slots, inside the store: %llu sectors", (unsigned long long)total);
	fd = open(f.cow, O_RDWR);
	for (i = 0; i < r.n; i++)
		CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)(r.first[i] * COW_SECTOR), (off_t)(r.count[i] * COW_SECTOR)) == 0,
		      "punch a hole");
	close(fd);
	CHECK(reopen(&f) == 0, "reopen after the holes: %s", f.s.error);
	CHECK(pread(f.s.cow_fd, buf, sizeof(buf), (off_t)(a * COW_SECTOR)) == sizeof(buf) &&
	      !memcmp(buf, want, sizeof(buf)), "chunk 40's data is still there");
	CHECK(P->locate(&f.s, 7, &n, &valid) == 0 && valid && n == g &&
	      P->locate(&f.s, 9, &n, &valid) == 0 && valid && n == g + 2 * 128,
	      "the granted slots used are still mapped: %s", f.s.error);
	teardown(&f);
}


/*
 * cowctl resize: a grown store records the device's size in a version 5
 * header (an ungrown one stays version 4, for older releases); the base's
 * partial last chunk reads zeros past the base's end; chunks past it map;
 * a header that claims less than the base is refused.
 */
static void test_grow(void)
{
	const uint64_t base = (1 << 20) + 12288, grown = 3 << 20;
	static char junk[65536 - 12288], back[65536 - 12288];
	unsigned char h[176];
	struct cow_store_info info;
	struct seen seen = { 0 };
	struct fixture f;
	uint64_t s16, v;
	uint32_t crc;

	TEST("grow: version 5 header, zeros past the base, chunks past it");
	setup(&f, base, 8 << 20, "grow");
	CHECK(P->create(&f.s) == 0 && P->open(&f.s) == 0, "%s", f.s.error);
	CHECK(pread(f.s.cow_fd, h, sizeof(h), 0) == sizeof(h) && h[8] == 4, "a new store is version 4");
	CHECK(f.s.dev_size == 0, "holds the base's size");
	s16 = map_chunk(&f, 16);
	CHECK(s16 && P->commit(&f.s) == 0, "the partial last chunk: %s", f.s.error);
	memset(junk, 0xee, sizeof(junk));
	if (pwrite(f.s.cow_fd, junk, sizeof(junk), (off_t)(s16 * COW_SECTOR + 12288)) != sizeof(junk))
		abort();
	CHECK(P->grow(&f.s, base) == 0 && f.s.dev_size == 0, "to its size: nothing");
	CHECK(P->grow(&f.s, grown) == 0, "grow: %s", f.s.error);
	CHECK(f.s.dev_size == grown, "dev_size %llu", (unsigned long long)f.s.dev_size);
	CHECK(pread(f.s.cow_fd, back, sizeof(back), (off_t)(s16 * COW_SECTOR + 12288)) == sizeof(back) &&
	      !memcmp(back, memset(junk, 0, sizeof(junk)), sizeof(back)), "the last chunk's tail is zeros");
	CHECK(pread(f.s.cow_fd, h, sizeof(h), 0) == sizeof(h) && h[8] == 5, "version 5 once grown");
	CHECK(map_chunk(&f, 40) && P->commit(&f.s) == 0, "chunk 40, past the base: %s", f.s.error);
	CHECK(reopen(&f) == 0 && f.s.dev_size == grown, "reopened: %s", f.s.error);
	CHECK(P->for_each_mapping(&f.s, collect, &seen) == 0 && seen.n == 2 && seen.chunk[1] == 40,
	      "both mappings survive");
	memset(&info, 0, sizeof(info));
	CHECK(pread(f.s.cow_fd, h, sizeof(h), 0) == sizeof(h) && P->inspect(h, sizeof(h), &info) == 0 &&
	      info.dev_size == grown, "inspect says the grown size");

	/* A version 5 header that claims less than the base is corrupt. */
	v = htole64(100);
	memcpy(h + 168, &v, 8);
	memset(h + 96, 0, 4);
	crc = htole32(crc32c(0, h, sizeof(h)));
	memcpy(h + 96, &crc, 4);
	if (pwrite(f.s.cow_fd, h, sizeof(h), 0) != sizeof(h))
		abort();
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "grown"), "refused: %s", f.s.error);
	teardown(&f);
}

int main(void)
{
	P = cow_plugin_init();
	if (!mkdtemp(dir))
		return 2;
	CHECK(!strcmp(P->name, "packed"), "registration");
	test_crc32c();
	test_round_trip();
	test_torn_and_corrupt();
	test_crafted_layout();
	test_refusals();
	test_full();
	test_rollover();
	test_reuse();
	test_base_label();
	test_hold();
	test_grant();
	test_unused();
	test_base_samples();
	test_grow();
	rmdir(dir);
	return check_done("test-packed");
}
