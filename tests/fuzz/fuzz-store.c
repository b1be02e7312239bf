// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness for a store plugin (linked in: one binary per plugin).
 * The input is a store as it lies on disk; the base is a sparse file of
 * zeros of the size the header names (as the seeds were made over).  The
 * plugin sees what cowctl and cowd would give it:
 *
 *   probe, inspect                          (cowctl inspect)
 *   open read-only, for_each_mapping, check (cowctl check, dump, merge)
 *   open, grant, locate/mark/commit, grow and a first write past the
 *   old end, for_each_unused (holes punched there), reopen      (cowd)
 *   open, repair, reopen                    (cowctl check --repair)
 *
 * Crashes and sanitizer reports are findings; so is a store that check()
 * called sound but that, once the plugin itself added mappings to it and
 * the space it called unused was punched out, opens no more, loses a
 * committed mapping, or is called corrupt; and unused space reported over
 * a mapped chunk's data.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);

#define MAX_BASE (1ULL << 40)
#define COW_ROOM (1 << 20)	/* beyond the input: room for new clusters */
#define MAX_OPS 8

static const struct cow_plugin *P;

/* The base size the store's header names (the harness knows the formats). */
static uint64_t header_base_size(const uint8_t *d, size_t len)
{
	uint64_t v;

	if (!strcmp(P->name, "qcow2") && len >= 32) {
		memcpy(&v, d + 24, 8);
		return be64toh(v);
	}
	if (!strcmp(P->name, "uml") && len >= 20) {
		memcpy(&v, d + 12, 8);
		return be64toh(v);
	}
	if (!strcmp(P->name, "packed") && len >= 24) {
		memcpy(&v, d + 16, 8);
		return le64toh(v) * COW_SECTOR;
	}
	return 0;
}

/*
 * The packed format checksums its header and journal blocks: a mutation
 * would only ever reach the checksum test.  Make them right again, so the
 * fuzzer gets to the fields behind them (torn blocks still come from
 * mutations of the magic and of blocks past the journal).
 */
static void packed_fix_crcs(uint8_t *d, size_t len)
{
	uint64_t start, blocks, b;
	uint32_t crc, id, version;
	size_t hlen = 104;	/* the header's checksummed bytes; 168 from version 3 */

	if (len < hlen)
		return;
	memcpy(&version, d + 8, 4);
	if (le32toh(version) >= 3)
		hlen = 168;
	if (le32toh(version) >= 5)
		hlen = 176;
	if (len < hlen)
		return;
	memset(d + 96, 0, 4);
	crc = htole32(crc32c(0, d, hlen));
	memcpy(d + 96, &crc, 4);
	memcpy(&id, d + 32, 4);
	memcpy(&start, d + 40, 8);
	memcpy(&blocks, d + 48, 8);
	start = le64toh(start) * COW_SECTOR;
	blocks = le64toh(blocks);
	for (b = 0; b < blocks && start < len && len - start >= 4096 * (b + 1); b++) {
		uint8_t *blk = d + start + 4096 * b;
		uint32_t magic;

		memcpy(&magic, blk, 4);
		if (le32toh(magic) != 0x4c4e524aU)	/* "JRNL" */
			continue;
		memset(blk + 4, 0, 4);
		crc = htole32(crc32c(le32toh(id), blk, 4096));
		memcpy(blk + 4, &crc, 4);
	}
}

static int memfd_of(const char *name, const void *data, size_t len, uint64_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (len && pwrite_full(fd, data, len, 0))
		abort();
	if (ftruncate(fd, (off_t)size))
		abort();
	return fd;
}

struct listing {
	uint64_t n, last_chunk;
	int disordered;
	const uint64_t *want_chunk, *want_sector;
	int nwant, found;
};

static int list_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct listing *l = ctx;
	int i;

	if (l->n && chunk <= l->last_chunk)
		l->disordered = 1;
	l->last_chunk = chunk;
	l->n++;
	for (i = 0; i < l->nwant; i++)
		if (l->want_chunk[i] == chunk && l->want_sector[i] == sector)
			l->found++;
	return 0;
}

struct unused {
	uint64_t end, cs;
	const uint64_t *sector;
	int n, fd, bad;
};

/* cowd's release of unused space: a hole where the plugin says nothing is. */
static int unused_one(void *ctx, uint64_t first, uint64_t count)
{
	struct unused *u = ctx;
	int j;

	if (!count || first < u->end)
		u->bad = 1;
	for (j = 0; j < u->n; j++)
		if (u->sector[j] < first + count && u->sector[j] + u->cs > first)
			u->bad = 1;
	u->end = first + count;
	if (first < (1ULL << 40) / COW_SECTOR && count < (1ULL << 40) / COW_SECTOR)
		fallocate(u->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(first * COW_SECTOR), (off_t)(count * COW_SECTOR));
	return 0;
}

struct extents {
	uint64_t end, base_sectors;
	int bad;
};

static int extent_one(void *ctx, uint64_t sector, uint64_t count, uint64_t cow_sector)
{
	struct extents *x = ctx;

	if (sector < x->end || !count || count > x->base_sectors - sector ||
	    sector > x->base_sectors)
		x->bad = 1;
	x->end = sector + count;
	return 0;
}

/*
 * cowctl check, roughly, and merge's walk: 0 sound, 1 leaks, -1 corrupt or
 * unreadable.  A store called sound must list its extents in order, inside
 * the base.
 */
static int offline_check(struct cow_store *s, struct listing *l)
{
	uint64_t dev = s->dev_size > s->base_size ? s->dev_size : s->base_size;
	struct extents x = { .base_sectors = (dev + COW_SECTOR - 1) / COW_SECTOR };
	int r;

	if (P->for_each_mapping(s, list_one, l) || l->disordered)
		return -1;
	if (COW_PLUGIN_HAS(P, for_each_extent) && P->for_each_extent(s, extent_one, &x))
		return -1;
	if (!COW_PLUGIN_HAS(P, check))
		return 0;
	r = P->check(s);
	if (r >= 0 && x.bad) {
		fprintf(stderr, "a sound store lists extents out of order or past the base\n");
		abort();
	}
	return r < 0 ? -1 : r;
}

static uint64_t mix(uint64_t *x)
{
	*x ^= *x >> 33;
	*x *= 0xff51afd7ed558ccdULL;
	*x ^= *x >> 33;
	return *x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct cow_store_info info;
	struct cow_store s;
	struct listing l = { 0 };
	uint64_t chunk[MAX_OPS + 1], sector[MAX_OPS + 1], nr_chunks, seed = len, cow_size;
	uint64_t granted = 0, granted_left = 0;
	int sound, verdict, nmarked = 0, i, valid, r;
	static char buf[1 << 21], head[64 << 10];
	uint8_t *fixed = NULL;

	if (!P)
		P = cow_plugin_init();
	if (!strcmp(P->name, "packed")) {
		fixed = malloc(len ? len : 1);
		if (!fixed)
			return 0;
		memcpy(fixed, data, len);
		packed_fix_crcs(fixed, len);
		data = fixed;
	}
	/* The head cowctl reads: 64 KiB (the store goes on in zeros). */
	memset(head, 0, sizeof(head));
	memcpy(head, data, len < sizeof(head) ? len : sizeof(head));
	memset(&info, 0, sizeof(info));
	if (!P->probe(head, sizeof(head)) ||
	    (COW_PLUGIN_HAS(P, inspect) && P->inspect(head, sizeof(head), &info)))
		goto done;

	memset(&s, 0, sizeof(s));
	s.base_size = header_base_size(data, len);
	if (!s.base_size || s.base_size > MAX_BASE)
		goto done;
	/* What cowctl passes: the header's chunk size, or its default. */
	s.chunk_sectors = info.chunk_sectors ? info.chunk_sectors : 128;
	cow_size = (len + COW_ROOM + 4095) / 4096 * 4096;
	s.base_fd = memfd_of("base", NULL, 0, s.base_size);
	s.cow_fd = memfd_of("cow", data, len, cow_size);
	s.cow_size = cow_size;
	s.base_name = "base.img";
	s.cow_is_file = 0;	/* a device of fixed size: no growth */

	/* Offline tools. */
	s.read_only = 1;
	if (P->open(&s))
		goto out;
	sound = offline_check(&s, &l) >= 0;
	P->close(&s);

	/* cowd: a few first writes, committed (cowd's chunks: 4 KiB to 2 MiB). */
	if (s.chunk_sectors < 8 || s.chunk_sectors > (1 << 12) ||
	    (s.chunk_sectors & (s.chunk_sectors - 1)))
		goto out;
	s.read_only = 0;
	if (P->open(&s))
		goto out;
	nr_chunks = (s.base_size + s.chunk_sectors * (uint64_t)COW_SECTOR - 1) /
		    (s.chunk_sectors * (uint64_t)COW_SECTOR);
	if (COW_PLUGIN_HAS(P, grant) && P->grant(&s, MAX_OPS / 2, &granted, &granted_left))
		granted_left = 0;
	for (i = 0; i < MAX_OPS; i++) {
		uint64_t c = mix(&seed) % nr_chunks, at = 0, cb = s.chunk_sectors * (uint64_t)COW_SECTOR;
		/* The kernel copies the base's last chunk as far as the base goes. */
		size_t n = s.base_size - c * cb < cb ? s.base_size - c * cb : cb;
		int j;

		/* The kernel faults on a chunk once: it holds it after MAP. */
		for (j = 0; j < nmarked && chunk[j] != c; j++)
			;
		if (j < nmarked)
			continue;
		valid = 0;
		/* Every other first write takes a granted location, as the kernel does. */
		if (granted_left && i % 2) {
			at = granted;
			granted += s.chunk_sectors;
			granted_left--;
		} else if (P->locate(&s, c, &at, &valid)) {
			continue;
		}
		if (!valid) {
			memset(buf, (int)c, n);
			if (at * COW_SECTOR + n > s.cow_size) {
				if (sound) {
					fprintf(stderr, "chunk %llu was given sector %llu, past the store\n",
						(unsigned long long)c, (unsigned long long)at);
					abort();
				}
				continue;
			}
			if (pwrite_full(s.cow_fd, buf, n, at * COW_SECTOR))
				abort();
		}
		if (P->mark(&s, c, at))
			continue;
		chunk[nmarked] = c;
		sector[nmarked++] = at;
	}
	if (P->commit(&s)) {
		P->close(&s);
		goto out;
	}
	/* cowctl resize: grow, then a first write past the old end, committed. */
	if (COW_PLUGIN_HAS(P, grow)) {
		uint64_t cb = s.chunk_sectors * (uint64_t)COW_SECTOR, old_end = nr_chunks;
		uint64_t at = 0, size = old_end * cb + (1 + mix(&seed) % 64) * cb;

		if (!P->grow(&s, size)) {
			if (s.dev_size != size) {
				fprintf(stderr, "grow() to %llu left dev_size %llu\n",
					(unsigned long long)size, (unsigned long long)s.dev_size);
				abort();
			}
			if (!P->locate(&s, old_end, &at, &valid) && !valid &&
			    at * COW_SECTOR + cb <= s.cow_size && !P->mark(&s, old_end, at) &&
			    !P->commit(&s)) {
				chunk[nmarked] = old_end;
				sector[nmarked++] = at;
			}
		}
	}
	if (COW_PLUGIN_HAS(P, for_each_unused)) {
		struct unused u = { .cs = s.chunk_sectors, .sector = sector, .n = nmarked,
				    .fd = s.cow_fd };

		if (!P->for_each_unused(&s, unused_one, &u) && sound && u.bad) {
			fprintf(stderr, "unused space reported out of order or over a mapped chunk\n");
			abort();
		}
	}
	P->close(&s);

	/* What was sound and committed opens, lists every new mapping, checks. */
	s.read_only = 1;
	if (P->open(&s)) {
		if (sound) {
			fprintf(stderr, "a sound store opens no more after a commit: %s\n", s.error);
			abort();
		}
		goto out;
	}
	memset(&l, 0, sizeof(l));
	l.want_chunk = chunk;
	l.want_sector = sector;
	l.nwant = nmarked;
	verdict = offline_check(&s, &l);
	if (sound && verdict < 0) {
		fprintf(stderr, "a sound store is corrupt after a commit: %s\n", s.error);
		abort();
	}
	if (sound && l.found < nmarked) {
		fprintf(stderr, "%d of %d committed mappings are gone\n", nmarked - l.found, nmarked);
		abort();
	}
	P->close(&s);

	/* cowctl check --repair of a leaking store: nothing corrupt, nothing lost. */
	if (!sound || verdict != 1 || !COW_PLUGIN_HAS(P, repair))
		goto out;
	s.read_only = 0;
	if (P->open(&s))
		goto out;
	r = P->repair(&s);
	P->close(&s);
	if (r)
		goto out;
	s.read_only = 1;
	if (P->open(&s)) {
		fprintf(stderr, "a repaired store opens no more: %s\n", s.error);
		abort();
	}
	memset(&l, 0, sizeof(l));
	l.want_chunk = chunk;
	l.want_sector = sector;
	l.nwant = nmarked;
	if (offline_check(&s, &l) < 0 || l.found < nmarked) {
		fprintf(stderr, "repair broke the store (%d of %d mappings): %s\n", l.found, nmarked,
			s.error);
		abort();
	}
	P->close(&s);
out:
	close(s.base_fd);
	close(s.cow_fd);
done:
	free(fixed);
	return 0;
}
