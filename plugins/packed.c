// SPDX-License-Identifier: GPL-2.0-only
/*
 * The native packed store: for a CoW device smaller than the base.  Chunks
 * get data slots in allocation order, so first writes that follow each
 * other land in consecutive slots and coalesce into linear segments.
 *
 * Layout (little-endian, 4 KiB blocks):
 *   block 0              header: magic, version, geometry, the base's
 *                        identity (size and crc32c of its first MiB), layout
 *   journal              a ring of blocks of (chunk, slot) records; the
 *                        block of sequence number seq lives at seq modulo the
 *                        ring's size; each block carries its seq, its commit
 *                        number, a LAST flag on the last block of a commit,
 *                        and a crc32c
 *   checkpoint A, B      every mapping up to a journal seq, written
 *                        (alternately) a few blocks per commit while the
 *                        journal goes on, so that no commit writes the
 *                        whole map at once (see pk_commit)
 *   data                 chunk-aligned slots
 *
 * Every crc is seeded with the store's random id, so blocks left on the
 * device by an earlier store never validate.  Replay: the newest valid
 * checkpoint, then the journal from the seq after it, block by block while
 * each is valid, has the next seq and the next commit number; a commit
 * counts only once its LAST block is read.  A valid block of a later
 * commit past the end means a damaged journal (refused); blocks of the
 * next commit there are a torn last commit (ignored: it was never
 * acknowledged).
 *
 * A torn commit's sequence and commit numbers are never written again: a
 * later write of the same block, torn the other way, could complete it,
 * and it would name slots given out since.  So after a torn end (anything
 * past the journal's end but zeros and older blocks), and after a failed
 * commit, the next commit is a whole checkpoint, which takes that commit
 * number (so the first commit after a crash writes the whole map once),
 * and the ring is zeroed.  For the same reason each open's first commit
 * clears the header block of the checkpoint area it will write, where a
 * torn checkpoint of an earlier process may lie.
 *
 * Stores of version 3 and older have a linear journal that starts over at
 * block 0 after each checkpoint, written at once; they are read as they
 * are, and moved to the ring (a checkpoint, the journal zeroed, then the
 * new header) by their first commit.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cow-plugin.h"
#include "cow-store.h"

#define PK_MAGIC "DMCOWPK1"
/*
 * 2: base_sample_crc; version 1 stores still open, with the weaker check.
 * 3: base_id, a label the user gave the base.
 * 4: the journal is a ring and checkpoints are written a piece at a time.
 * 5: dev_sectors, the device's size once grown past the base (cowctl
 *    resize); only a grown store is made version 5, so that older
 *    releases still open the others.
 */
#define PK_VERSION 5
#define PK_RING_VERSION 4
#define PK_MADE_VERSION 4	/* what create() and upgrade() write */
#define PK_GROWN_VERSION 5
#define PK_MAX_DEV_SECTORS ((1ULL << 54) - 1)	/* bytes fit an int64 */
#define PK_SAMPLES 64		/* base samples in base_sample_crc */
#define PK_SAMPLE_BYTES 4096
#define PK_BLOCK 4096
#define PK_SECTORS_PER_BLOCK (PK_BLOCK / COW_SECTOR)
#define PK_MAX_JOURNAL_BLOCKS 256
#define PK_JMAGIC 0x4c4e524aU /* "JRNL" */
#define PK_CMAGIC 0x54504b43U /* "CKPT" */
#define PK_LAST 1U
#define PK_BASE_ID_BYTES (1U << 20)

struct pk_header {
	char magic[8];
	uint32_t version;
	uint32_t chunk_sectors;
	uint64_t base_sectors;
	uint32_t base_crc;	/* crc32c of the base's first base_id_bytes */
	uint32_t base_id_bytes;
	uint32_t store_id;	/* random; seeds every crc below */
	uint32_t base_sample_crc; /* version 2: of PK_SAMPLES blocks across the base */
	uint64_t journal_start;	/* sectors */
	uint64_t journal_blocks;
	uint64_t ckpt_start[2];	/* sectors */
	uint64_t ckpt_blocks;	/* per area */
	uint64_t data_start;	/* sectors, chunk aligned */
	uint64_t nr_slots;
	uint32_t crc;		/* of this header with crc = 0 (up to pad2 before version 3) */
	uint32_t pad2;
	char base_id[64];	/* version 3: NUL-terminated label of the base */
	uint64_t dev_sectors;	/* version 5: the device, grown past the base */
};

/* The bytes the header's crc covers. */
static size_t header_bytes(uint32_t version)
{
	return version >= PK_GROWN_VERSION ? sizeof(struct pk_header) :
	       version >= 3 ? offsetof(struct pk_header, dev_sectors) :
	       offsetof(struct pk_header, base_id);
}

struct pk_jhdr {
	uint32_t magic;
	uint32_t crc;		/* of the whole block with crc = 0 */
	uint64_t seq;		/* increases block by block, across checkpoints */
	uint64_t commit;
	uint32_t count;		/* records in this block */
	uint32_t flags;		/* PK_LAST */
};

struct pk_rec {
	uint64_t chunk;
	uint64_t slot;
};

struct pk_chdr {
	uint32_t magic;
	uint32_t crc;		/* of header (crc = 0) and records */
	uint64_t seq;		/* journal blocks up to this seq are included */
	uint64_t commit;
	uint64_t count;		/* records follow */
};

#define PK_RECS ((PK_BLOCK - sizeof(struct pk_jhdr)) / sizeof(struct pk_rec))
/* Sequence and commit numbers beyond are corrupt: they could wrap. */
#define PK_MAX_SEQ (UINT64_MAX / 4)

/*
 * Every mapping, in the order it was made (so that a checkpoint of the
 * first count of them can be written a block at a time while more are
 * added), and chunk -> position in that order by open addressing.
 */
#define EMPTY UINT64_MAX
struct pk_map {
	struct pk_rec *rec;	/* host byte order; from committed on: not yet committed */
	size_t n, max, committed;
	uint64_t *index;	/* cap entries: a position in rec, or EMPTY */
	size_t cap;
};

/*
 * A checkpoint of the first count mappings, written a few blocks per
 * commit.  Blocks go out 1, 2, ..., then block 0, whose header holds the
 * crc of them all, so the area validates only once it is whole.
 */
struct pk_ckpt_job {
	int active;
	uint64_t count;		/* mappings: map.rec[0, count) */
	uint64_t blocks;	/* of the area's image */
	uint64_t written;	/* blocks written, in the order above */
	uint64_t seq;		/* it covers the journal up to here */
	uint64_t room;		/* journal blocks free when it began */
	uint32_t crc;		/* running: block 0's bytes, then 1 to written */
	_Alignas(8) char head[PK_BLOCK]; /* block 0, crc field 0 until the end */
};

struct pk_store {
	struct pk_header h;	/* host byte order */
	struct pk_map map;	/* committed and marked mappings */
	/*
	 * A bit per data slot: mapped, or handed out (locate, grant, or a
	 * copy an earlier daemon started: hold).  A slot handed out whose
	 * mapping never reached a commit (a failed copy, a crash, a grant
	 * the kernel did not use) is free again in the next daemon.
	 */
	uint64_t *used;
	uint64_t nr_used;
	uint64_t next_slot;	/* every slot below it is used */
	uint64_t seq, commit;	/* last journal block and commit made durable */
	uint64_t ckpt_seq;	/* the durable checkpoint covers the journal up to here */
	int torn_end;		/* the journal may end in a torn commit: see the top */
	int area_unknown;	/* the next checkpoint area may hold a torn checkpoint */
	int ckpt_next;		/* checkpoint area to write next */
	struct pk_ckpt_job job;
};

/* ---- little-endian header fields ---------------------------------------- */

static void header_to_disk(const struct pk_header *in, struct pk_header *out)
{
	int i;

	*out = *in;
	out->version = htole32(in->version);
	out->chunk_sectors = htole32(in->chunk_sectors);
	out->base_sectors = htole64(in->base_sectors);
	out->base_crc = htole32(in->base_crc);
	out->base_id_bytes = htole32(in->base_id_bytes);
	out->store_id = htole32(in->store_id);
	out->base_sample_crc = htole32(in->base_sample_crc);
	out->journal_start = htole64(in->journal_start);
	out->journal_blocks = htole64(in->journal_blocks);
	for (i = 0; i < 2; i++)
		out->ckpt_start[i] = htole64(in->ckpt_start[i]);
	out->ckpt_blocks = htole64(in->ckpt_blocks);
	out->data_start = htole64(in->data_start);
	out->nr_slots = htole64(in->nr_slots);
	out->crc = htole32(in->crc);
	out->dev_sectors = htole64(in->dev_sectors);
}

static void header_from_disk(const struct pk_header *in, struct pk_header *out)
{
	int i;

	*out = *in;
	out->version = le32toh(in->version);
	out->chunk_sectors = le32toh(in->chunk_sectors);
	out->base_sectors = le64toh(in->base_sectors);
	out->base_crc = le32toh(in->base_crc);
	out->base_id_bytes = le32toh(in->base_id_bytes);
	out->store_id = le32toh(in->store_id);
	out->base_sample_crc = le32toh(in->base_sample_crc);
	out->journal_start = le64toh(in->journal_start);
	out->journal_blocks = le64toh(in->journal_blocks);
	for (i = 0; i < 2; i++)
		out->ckpt_start[i] = le64toh(in->ckpt_start[i]);
	out->ckpt_blocks = le64toh(in->ckpt_blocks);
	out->data_start = le64toh(in->data_start);
	out->nr_slots = le64toh(in->nr_slots);
	out->crc = le32toh(in->crc);
	out->dev_sectors = le64toh(in->dev_sectors);
}

static uint32_t header_crc(const struct pk_header *disk)
{
	struct pk_header h = *disk;

	h.crc = 0;
	return crc32c(0, &h, header_bytes(le32toh(disk->version)));
}

/* ---- the chunk -> slot map ---------------------------------------------- */

static size_t map_pos(const struct pk_map *m, uint64_t chunk)
{
	size_t i = (size_t)(chunk * 0x9e3779b97f4a7c15ULL >> 20) & (m->cap - 1);

	while (m->index[i] != EMPTY && m->rec[m->index[i]].chunk != chunk)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static int map_get(const struct pk_map *m, uint64_t chunk, uint64_t *slot)
{
	size_t i;

	if (!m->cap)
		return 0;
	i = map_pos(m, chunk);
	if (m->index[i] == EMPTY)
		return 0;
	*slot = m->rec[m->index[i]].slot;
	return 1;
}

static int map_put(struct pk_map *m, uint64_t chunk, uint64_t slot)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct pk_map big = *m;

		big.cap = m->cap ? m->cap * 2 : 1024;
		big.index = malloc(big.cap * sizeof(*big.index));
		if (!big.index)
			return -ENOMEM;
		memset(big.index, 0xff, big.cap * sizeof(*big.index));
		for (i = 0; i < m->n; i++)
			big.index[map_pos(&big, m->rec[i].chunk)] = i;
		free(m->index);
		*m = big;
	}
	i = map_pos(m, chunk);
	if (m->index[i] != EMPTY) {
		/* Replay met the chunk again: the later record wins. */
		m->rec[m->index[i]].slot = slot;
		return 0;
	}
	if (array_reserve(&m->rec, &m->max, m->n, sizeof(*m->rec)))
		return -ENOMEM;
	m->rec[m->n] = (struct pk_rec){ chunk, slot };
	m->index[i] = m->n++;
	return 0;
}

static void map_free(struct pk_map *m)
{
	free(m->rec);
	free(m->index);
	memset(m, 0, sizeof(*m));
}

static int slot_used(const struct pk_store *p, uint64_t slot)
{
	return p->used[slot / 64] >> slot % 64 & 1;
}

static void slot_take(struct pk_store *p, uint64_t slot)
{
	if (!slot_used(p, slot)) {
		p->used[slot / 64] |= 1ULL << slot % 64;
		p->nr_used++;
	}
}

/* The lowest free slot (from p->next_slot on), or nr_slots if none. */
static uint64_t free_slot(struct pk_store *p)
{
	while (p->next_slot < p->h.nr_slots) {
		if (p->next_slot % 64 == 0 && p->used[p->next_slot / 64] == ~0ULL)
			p->next_slot += 64;
		else if (slot_used(p, p->next_slot))
			p->next_slot++;
		else
			break;
	}
	if (p->next_slot > p->h.nr_slots)
		p->next_slot = p->h.nr_slots;
	return p->next_slot;
}

/* Record a mapping read back from the store. */
static int load_record(struct pk_store *p, uint64_t chunk, uint64_t slot)
{
	if (slot >= p->h.nr_slots)
		return -EINVAL;
	slot_take(p, slot);
	return map_put(&p->map, chunk, slot);
}

/* ---- layout ------------------------------------------------------------- */

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static int plan_layout(struct cow_store *s, struct pk_header *h, uint64_t cow_sectors)
{
	uint64_t cs = s->chunk_sectors, max_slots = cow_sectors / cs, meta;

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, PK_MAGIC, 8);
	h->version = PK_MADE_VERSION;
	h->chunk_sectors = s->chunk_sectors;
	h->base_sectors = s->base_size / COW_SECTOR;
	/* About 1/256 of the device, 64 KiB to 1 MiB. */
	h->journal_blocks = cow_sectors / PK_SECTORS_PER_BLOCK / 256;
	if (h->journal_blocks < 16)
		h->journal_blocks = 16;
	if (h->journal_blocks > PK_MAX_JOURNAL_BLOCKS)
		h->journal_blocks = PK_MAX_JOURNAL_BLOCKS;
	h->ckpt_blocks = (sizeof(struct pk_chdr) + max_slots * sizeof(struct pk_rec) + PK_BLOCK - 1) /
			 PK_BLOCK;
	h->journal_start = PK_SECTORS_PER_BLOCK;
	h->ckpt_start[0] = h->journal_start + h->journal_blocks * PK_SECTORS_PER_BLOCK;
	h->ckpt_start[1] = h->ckpt_start[0] + h->ckpt_blocks * PK_SECTORS_PER_BLOCK;
	meta = h->ckpt_start[1] + h->ckpt_blocks * PK_SECTORS_PER_BLOCK;
	h->data_start = round_up(meta, cs);
	if (cow_sectors < h->data_start + cs)
		return cow_store_error(s, -ENOSPC, "CoW device too small for a packed store: %llu bytes",
				       (unsigned long long)cow_sectors * COW_SECTOR);
	h->nr_slots = (cow_sectors - h->data_start) / cs;
	return 0;
}

/* [start, start + n * unit) lies in [from, limit), computed without wrapping. */
static int region_fits(uint64_t start, uint64_t n, uint64_t unit, uint64_t from, uint64_t limit)
{
	return start >= from && start <= limit && n <= (limit - start) / unit;
}

/*
 * A header's layout, as plan_layout() makes it: header block, journal,
 * two checkpoint areas that hold a record per slot, data slots, in that
 * order, none overlapping, all on a device of @cow_sectors.  The checksum
 * proves nothing against a crafted file, so every size is bounded before
 * anything is allocated or read by it.
 */
static int layout_fits(const struct pk_header *h, uint64_t cow_sectors)
{
	const uint64_t spb = PK_SECTORS_PER_BLOCK;
	uint64_t cs = h->chunk_sectors;

	if (!h->journal_blocks || h->journal_blocks > PK_MAX_JOURNAL_BLOCKS || !cs ||
	    h->data_start % cs ||
	    !region_fits(h->journal_start, h->journal_blocks, spb, spb, cow_sectors) ||
	    !region_fits(h->ckpt_start[0], h->ckpt_blocks, spb,
			 h->journal_start + h->journal_blocks * spb, cow_sectors) ||
	    !region_fits(h->ckpt_start[1], h->ckpt_blocks, spb,
			 h->ckpt_start[0] + h->ckpt_blocks * spb, cow_sectors) ||
	    !region_fits(h->data_start, h->nr_slots, cs,
			 h->ckpt_start[1] + h->ckpt_blocks * spb, cow_sectors))
		return 0;
	/* nr_slots <= cow_sectors < 2^55: the product cannot wrap. */
	return h->ckpt_blocks * PK_BLOCK >= sizeof(struct pk_chdr) + h->nr_slots * sizeof(struct pk_rec);
}

static int base_identity(struct cow_store *s, uint32_t bytes, uint32_t *crc)
{
	char *buf = malloc(bytes ? bytes : 1);
	int r;

	if (!buf)
		return -ENOMEM;
	r = pread_full(s->base_fd, buf, bytes, 0);
	if (!r)
		*crc = crc32c(0, buf, bytes);
	free(buf);
	return r;
}

/*
 * A base that differs only past its first MiB (a newer build of the same
 * image) must not pass for the store's: PK_SAMPLES blocks spread evenly
 * over the whole base, each PK_SAMPLE_BYTES (or what the base has).
 */
static int base_samples(struct cow_store *s, uint32_t *crc)
{
	uint64_t len = s->base_size < PK_SAMPLE_BYTES ? s->base_size : PK_SAMPLE_BYTES;
	char *buf = malloc(PK_SAMPLE_BYTES);
	int i, r = 0;

	if (!buf)
		return -ENOMEM;
	*crc = 0;
	for (i = 0; i < PK_SAMPLES && !r; i++) {
		uint64_t off = (s->base_size - len) / (PK_SAMPLES - 1) * i / COW_SECTOR * COW_SECTOR;

		r = pread_full(s->base_fd, buf, len, off);
		if (!r)
			*crc = crc32c(*crc, buf, len);
	}
	free(buf);
	return r;
}

/* ---- journal and checkpoints -------------------------------------------- */

static uint32_t block_crc(const struct pk_store *p, void *block, size_t len, uint32_t *crc_field)
{
	uint32_t saved = *crc_field, crc;

	*crc_field = 0;
	crc = crc32c(p->h.store_id, block, len);
	*crc_field = saved;
	return crc;
}

/* Records in a checkpoint's block 0 (after its header) and in later blocks. */
#define PK_HEAD_RECS ((PK_BLOCK - sizeof(struct pk_chdr)) / sizeof(struct pk_rec))
#define PK_BLOCK_RECS (PK_BLOCK / sizeof(struct pk_rec))

/* The records of block @b (> 0) of the job's checkpoint, little-endian. */
static void job_block(const struct pk_store *p, uint64_t b, char *out)
{
	struct pk_rec *rec = (struct pk_rec *)out;
	uint64_t first = PK_HEAD_RECS + (b - 1) * PK_BLOCK_RECS, k;

	memset(out, 0, PK_BLOCK);
	for (k = 0; k < PK_BLOCK_RECS && first + k < p->job.count; k++) {
		rec[k].chunk = htole64(p->map.rec[first + k].chunk);
		rec[k].slot = htole64(p->map.rec[first + k].slot);
	}
}

static void job_drop(struct pk_store *p)
{
	p->job.active = 0;
}

/* The job's checkpoint is on the device and synced: it is the newest. */
static void job_durable(struct pk_store *p)
{
	p->ckpt_seq = p->job.seq;
	p->ckpt_next ^= 1;
	job_drop(p);
}

/*
 * Begin a checkpoint of the first @count mappings into the next area.  A
 * crafted store can name one slot for several chunks: then the map may
 * not fit the area.
 */
static int job_begin(struct cow_store *s, struct pk_store *p, uint64_t count, uint64_t seq,
		     uint64_t commit)
{
	struct pk_ckpt_job *job = &p->job;
	struct pk_chdr *c = (struct pk_chdr *)job->head;
	struct pk_rec *rec = (struct pk_rec *)(c + 1);
	uint64_t used = sizeof(*c) + count * sizeof(*rec), k;

	if (used > p->h.ckpt_blocks * PK_BLOCK)
		return cow_store_error(s, -EINVAL, "corrupt packed store: %llu mappings for %llu slots",
				       (unsigned long long)count, (unsigned long long)p->h.nr_slots);
	memset(job->head, 0, PK_BLOCK);
	c->magic = htole32(PK_CMAGIC);
	c->seq = htole64(seq);
	c->commit = htole64(commit);
	c->count = htole64(count);
	for (k = 0; k < PK_HEAD_RECS && k < count; k++) {
		rec[k].chunk = htole64(p->map.rec[k].chunk);
		rec[k].slot = htole64(p->map.rec[k].slot);
	}
	job->active = 1;
	job->count = count;
	job->blocks = round_up(used, PK_BLOCK) / PK_BLOCK;
	job->written = 0;
	job->seq = seq;
	job->room = p->ckpt_seq + p->h.journal_blocks - seq;
	job->crc = crc32c(p->h.store_id, job->head, used < PK_BLOCK ? used : PK_BLOCK);
	return 0;
}

/* Blocks built per write, to bound the buffer: 256 KiB. */
#define PK_JOB_BATCH 64

/* Write the job's blocks up to @upto of them (in its order), unsynced. */
static int job_write(struct cow_store *s, struct pk_store *p, uint64_t upto)
{
	struct pk_ckpt_job *job = &p->job;
	uint64_t area = p->h.ckpt_start[p->ckpt_next] * COW_SECTOR, from, to, b;
	uint64_t used = sizeof(struct pk_chdr) + job->count * sizeof(struct pk_rec);
	struct pk_chdr *c = (struct pk_chdr *)job->head;
	char *buf = NULL;
	int r = 0;

	if (upto > job->blocks)
		upto = job->blocks;
	if (upto <= job->written)
		return 0;
	/* Blocks 1 .. blocks-1 are the first blocks - 1 of the order. */
	from = job->written + 1;
	to = upto < job->blocks ? upto + 1 : job->blocks;
	if (from < to) {
		buf = malloc((to - from < PK_JOB_BATCH ? to - from : PK_JOB_BATCH) * PK_BLOCK);
		if (!buf)
			return -ENOMEM;
	}
	while (from < to && !r) {
		uint64_t n = to - from < PK_JOB_BATCH ? to - from : PK_JOB_BATCH;

		for (b = 0; b < n; b++) {
			uint64_t start = (from + b) * PK_BLOCK;
			uint64_t len = used - start < PK_BLOCK ? used - start : PK_BLOCK;

			job_block(p, from + b, buf + b * PK_BLOCK);
			job->crc = crc32c(job->crc, buf + b * PK_BLOCK, len);
		}
		r = pwrite_full(s->cow_fd, buf, n * PK_BLOCK, area + from * PK_BLOCK);
		from += n;
		job->written = from - 1;
	}
	free(buf);
	if (r || upto < job->blocks)
		return r;
	c->crc = htole32(job->crc);
	r = pwrite_full(s->cow_fd, job->head, PK_BLOCK, area);
	if (!r)
		job->written = job->blocks;
	return r;
}

/* Write the rest of the job and sync: its checkpoint is then the newest. */
static int job_finish(struct cow_store *s, struct pk_store *p)
{
	int r = job_write(s, p, p->job.blocks);

	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		job_drop(p);
		p->area_unknown = 1;	/* its block 0 may have landed, or part of it */
		return cow_store_error(s, r, "cannot write a checkpoint: %s", strerror(-r));
	}
	job_durable(p);
	return 0;
}

/*
 * Write every mapping at once into the next checkpoint area and sync:
 * for a new store, for one moving to the ring, and for a commit too large
 * for the journal (the pending mappings are in the map: the checkpoint is
 * their commit).
 */
static int write_checkpoint(struct cow_store *s, struct pk_store *p)
{
	int r;

	r = job_begin(s, p, p->map.n, p->seq, p->commit + 1);
	if (!r)
		r = job_finish(s, p);
	if (r)
		return r;
	p->commit++;
	p->map.committed = p->map.n;
	return 0;
}

/*
 * How much of the job this commit writes, its journal blocks having
 * reached @seq: in proportion to the journal used since the job began,
 * finishing when half the room it had is used.  The other half is for
 * commits that come before the last piece is synced.
 */
static uint64_t job_due(const struct pk_store *p, uint64_t seq)
{
	uint64_t half = p->job.room / 2 ? p->job.room / 2 : 1, used = seq - p->job.seq;

	if (used >= half)
		return p->job.blocks;
	return (p->job.blocks * used + half - 1) / half;
}

/*
 * Read and check checkpoint area @i: 1 if valid, with its records in a
 * malloc'ed *records (header first), 0 if not, or a negative errno if it
 * cannot be read (never taken for invalid: the older one would be used,
 * and commits after it lost).  Reads only the records it holds.
 */
static int read_checkpoint(struct cow_store *s, struct pk_store *p, int i, struct pk_chdr *out,
			   char **records)
{
	uint64_t off = p->h.ckpt_start[i] * COW_SECTOR, count, len;
	struct pk_chdr head, *c;
	char *buf;
	int r;

	*records = NULL;
	r = pread_full(s->cow_fd, &head, sizeof(head), off);
	if (r)
		return cow_store_error(s, r, "cannot read a checkpoint: %s", strerror(-r));
	if (le32toh(head.magic) != PK_CMAGIC)
		return 0;
	count = le64toh(head.count);
	if (count > (p->h.ckpt_blocks * PK_BLOCK - sizeof(head)) / sizeof(struct pk_rec))
		return 0;
	len = sizeof(head) + count * sizeof(struct pk_rec);
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	c = (struct pk_chdr *)buf;
	r = pread_full(s->cow_fd, buf, len, off);
	if (r) {
		free(buf);
		return cow_store_error(s, r, "cannot read a checkpoint: %s", strerror(-r));
	}
	if (le32toh(c->crc) != block_crc(p, buf, len, &c->crc)) {
		free(buf);
		return 0;
	}
	out->seq = le64toh(c->seq);
	out->commit = le64toh(c->commit);
	out->count = count;
	*records = buf;
	return 1;
}

static int journal_block_valid(const struct pk_store *p, char *block, struct pk_jhdr *out)
{
	struct pk_jhdr *j = (struct pk_jhdr *)block;

	if (le32toh(j->magic) != PK_JMAGIC || le32toh(j->count) > PK_RECS ||
	    le32toh(j->crc) != block_crc(p, block, PK_BLOCK, &j->crc))
		return 0;
	out->seq = le64toh(j->seq);
	out->commit = le64toh(j->commit);
	out->count = le32toh(j->count);
	out->flags = le32toh(j->flags);
	return 1;
}

/* Write @n journal blocks from @buf, the first of seq @seq, into the ring. */
static int journal_write(struct cow_store *s, struct pk_store *p, const char *buf, uint64_t seq,
			 uint64_t n)
{
	uint64_t ring = p->h.journal_blocks, at = seq % ring, first = n < ring - at ? n : ring - at;
	uint64_t base = p->h.journal_start * COW_SECTOR;
	int r;

	r = pwrite_full(s->cow_fd, buf, first * PK_BLOCK, base + at * PK_BLOCK);
	if (!r && n > first)
		r = pwrite_full(s->cow_fd, buf + first * PK_BLOCK, (n - first) * PK_BLOCK, base);
	return r;
}

/* The journal being replayed: blocks read, records of the commit being read. */
struct pk_walk {
	char *blocks;
	struct pk_rec *batch;
	size_t nbatch;
	uint64_t last_commit;	/* the last commit applied */
};

/* Add block @block's records to the commit being read; apply it if LAST. */
static int walk_block(struct pk_store *p, struct pk_walk *w, char *block, const struct pk_jhdr *j)
{
	struct pk_rec *rec = (struct pk_rec *)(block + sizeof(struct pk_jhdr));
	size_t k;
	int r = 0;

	for (k = 0; k < j->count; k++) {
		w->batch[w->nbatch].chunk = le64toh(rec[k].chunk);
		w->batch[w->nbatch].slot = le64toh(rec[k].slot);
		w->nbatch++;
	}
	if (!(j->flags & PK_LAST))
		return 0;
	for (k = 0; k < w->nbatch && !r; k++)
		r = load_record(p, w->batch[k].chunk, w->batch[k].slot);
	w->nbatch = 0;
	w->last_commit = j->commit;
	return r;
}

/* A bad journal block is a torn last commit, unless a later commit follows it. */
static int damaged(struct cow_store *s, uint64_t block, uint64_t later_commit)
{
	return cow_store_error(s, -EINVAL,
			       "corrupt packed store: journal block %llu is damaged but commit %llu follows it",
			       (unsigned long long)block, (unsigned long long)later_commit);
}

/*
 * Version 3 and older: the journal from block 0 while seqs increase.  The
 * next commit moves the store to the ring with a checkpoint that outranks
 * every block on the device, torn ones too.
 */
static int walk_linear(struct cow_store *s, struct pk_store *p, struct pk_walk *w)
{
	uint64_t last_seq = p->seq, max_seq = p->seq, max_commit = w->last_commit;
	size_t b, later;
	int r = 0;

	for (b = 0; b < p->h.journal_blocks; b++) {
		char *block = w->blocks + b * PK_BLOCK;
		struct pk_jhdr j;

		if (journal_block_valid(p, block, &j) && j.seq > last_seq) {
			max_seq = j.seq > max_seq ? j.seq : max_seq;
			max_commit = j.commit > max_commit ? j.commit : max_commit;
			last_seq = j.seq;
			r = walk_block(p, w, block, &j);
			if (r)
				return cow_store_error(s, r, "corrupt packed store: bad journal record");
			continue;
		}
		/*
		 * The end of the journal, or a bad block.  Only a torn last
		 * commit may end in a bad block: a valid block of a later
		 * commit after it means the journal is corrupt.
		 */
		for (later = b + 1; later < p->h.journal_blocks; later++) {
			struct pk_jhdr lj;

			if (!journal_block_valid(p, w->blocks + later * PK_BLOCK, &lj) || lj.seq <= last_seq)
				continue;
			if (lj.commit > w->last_commit + 1)
				return damaged(s, b, lj.commit);
			max_seq = lj.seq > max_seq ? lj.seq : max_seq;
		}
		break;
	}
	if (max_seq > PK_MAX_SEQ || max_commit > PK_MAX_SEQ)
		return cow_store_error(s, -EINVAL, "corrupt packed store: journal numbers out of range");
	p->seq = max_seq;
	p->commit = max_commit;
	return 0;
}

/*
 * The ring, from the block after the checkpoint's seq.  Past the last
 * commit applied: zeros, blocks of older turns of the ring, or a torn
 * commit, the next commit number (anything later means a damaged block
 * before it).
 */
static int walk_ring(struct cow_store *s, struct pk_store *p, struct pk_walk *w)
{
	uint64_t ring = p->h.journal_blocks, seq = p->seq, applied = p->seq, b;

	for (b = 0; b < ring; b++) {
		char *block = w->blocks + (++seq % ring) * PK_BLOCK;
		struct pk_jhdr j;
		int r;

		if (!journal_block_valid(p, block, &j) || j.seq != seq || j.commit != w->last_commit + 1)
			break;
		r = walk_block(p, w, block, &j);
		if (r)
			return cow_store_error(s, r, "corrupt packed store: bad journal record");
		if (j.flags & PK_LAST)
			applied = seq;
	}
	p->torn_end = 0;
	for (b = 0; b < ring; b++) {
		char *block = w->blocks + b * PK_BLOCK;
		struct pk_jhdr j;

		if (!journal_block_valid(p, block, &j)) {
			if (!buf_is_zero(block, PK_BLOCK))
				p->torn_end = 1;
			continue;
		}
		if (j.seq % ring != b || j.seq > PK_MAX_SEQ || j.commit > PK_MAX_SEQ)
			return cow_store_error(s, -EINVAL,
					       "corrupt packed store: journal block %llu holds seq %llu",
					       (unsigned long long)b, (unsigned long long)j.seq);
		if (j.seq <= applied)
			continue;
		if (j.commit > w->last_commit + 1)
			return damaged(s, (applied + 1) % ring, j.commit);
		p->torn_end = 1;
	}
	p->seq = applied;
	p->commit = w->last_commit;
	return 0;
}

static int replay(struct cow_store *s, struct pk_store *p)
{
	struct pk_chdr ck[2], *best = NULL;
	struct pk_walk w = { 0 };
	char *recs[2];
	size_t k;
	int i, r = 0, best_i = 0;

	for (i = 0; i < 2; i++) {
		int valid = read_checkpoint(s, p, i, &ck[i], &recs[i]);

		if (valid < 0) {
			free(recs[0]);
			return valid;
		}
		if (valid && (!best || ck[i].seq > best->seq || (ck[i].seq == best->seq && ck[i].commit > best->commit))) {
			best = &ck[i];
			best_i = i;
		}
	}
	if (!best || best->seq > PK_MAX_SEQ || best->commit > PK_MAX_SEQ) {
		free(recs[0]);
		free(recs[1]);
		return cow_store_error(s, -EINVAL, "corrupt packed store: no valid checkpoint");
	}
	for (k = 0; k < best->count && !r; k++) {
		struct pk_rec *rec = (struct pk_rec *)(recs[best_i] + sizeof(struct pk_chdr)) + k;

		r = load_record(p, le64toh(rec->chunk), le64toh(rec->slot));
	}
	free(recs[0]);
	free(recs[1]);
	if (r)
		return cow_store_error(s, r, "corrupt packed store: bad checkpoint record");
	p->ckpt_next = best_i ^ 1;
	p->ckpt_seq = p->seq = best->seq;
	w.last_commit = best->commit;

	w.blocks = malloc(p->h.journal_blocks * PK_BLOCK);
	w.batch = malloc(p->h.journal_blocks * PK_RECS * sizeof(*w.batch));
	if (!w.blocks || !w.batch) {
		r = -ENOMEM;
		goto out;
	}
	r = pread_full(s->cow_fd, w.blocks, p->h.journal_blocks * PK_BLOCK,
		       p->h.journal_start * COW_SECTOR);
	if (r) {
		r = cow_store_error(s, r, "cannot read the journal: %s", strerror(-r));
		goto out;
	}
	r = p->h.version >= PK_RING_VERSION ? walk_ring(s, p, &w) : walk_linear(s, p, &w);
	p->map.committed = p->map.n;
out:
	free(w.blocks);
	free(w.batch);
	return r;
}

/* ---- callbacks ------------------------------------------------------------ */

static int write_header(struct cow_store *s, const struct pk_header *h)
{
	struct pk_header disk;
	int r;

	header_to_disk(h, &disk);
	disk.crc = 0;
	disk.crc = htole32(crc32c(0, &disk, header_bytes(h->version)));
	r = pwrite_full(s->cow_fd, &disk, sizeof(disk), 0);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r)
		return cow_store_error(s, r, "cannot write the header: %s", strerror(-r));
	return 0;
}

static int pk_probe(const void *head, size_t len)
{
	return len >= 8 && !memcmp(head, PK_MAGIC, 8);
}

static int pk_create(struct cow_store *s)
{
	struct pk_store p = { 0 };
	uint64_t cow_sectors = s->cow_size / COW_SECTOR, off;
	char *zero;
	int fd, r;

	/* A new file gets room for every chunk of the base. */
	if (s->cow_is_file && cow_sectors < s->base_size / COW_SECTOR)
		cow_sectors = round_up(s->base_size / COW_SECTOR, s->chunk_sectors) +
			      s->base_size / COW_SECTOR / 64 + 4096;
	r = plan_layout(s, &p.h, cow_sectors);
	if (r)
		return r;
	if (s->base_id && *s->base_id) {
		if (strlen(s->base_id) >= sizeof(p.h.base_id))
			return cow_store_error(s, -EINVAL, "a base label is at most %zu bytes",
					       sizeof(p.h.base_id) - 1);
		strcpy(p.h.base_id, s->base_id);
	}
	if (s->cow_is_file && cow_sectors * COW_SECTOR > s->cow_size) {
		if (ftruncate(s->cow_fd, (off_t)(cow_sectors * COW_SECTOR)) < 0)
			return cow_store_error(s, -errno, "cannot size the store file: %s", strerror(errno));
		s->cow_size = cow_sectors * COW_SECTOR;
	}
	p.h.base_id_bytes = s->base_size < PK_BASE_ID_BYTES ? (uint32_t)s->base_size : PK_BASE_ID_BYTES;
	r = base_identity(s, p.h.base_id_bytes, &p.h.base_crc);
	if (!r)
		r = base_samples(s, &p.h.base_sample_crc);
	if (r)
		return cow_store_error(s, r, "cannot read the base: %s", strerror(-r));
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, &p.h.store_id, sizeof(p.h.store_id)) != sizeof(p.h.store_id))
		p.h.store_id = (uint32_t)getpid() ^ 0x5eed;
	if (fd >= 0)
		close(fd);

	/* Metadata area zeroed, then an empty checkpoint, then the header. */
	zero = calloc(1, 1 << 20);
	if (!zero)
		return -ENOMEM;
	for (off = PK_BLOCK; off < p.h.data_start * COW_SECTOR && !r; off += 1 << 20) {
		uint64_t n = p.h.data_start * COW_SECTOR - off;

		r = pwrite_full(s->cow_fd, zero, n < (1 << 20) ? n : 1 << 20, off);
	}
	free(zero);
	if (!r)
		r = write_checkpoint(s, &p);
	if (!r)
		r = write_header(s, &p.h);
	map_free(&p.map);
	return r;
}

static void pk_close(struct cow_store *s)
{
	struct pk_store *p = s->priv;

	if (!p)
		return;
	map_free(&p->map);
	free(p->used);
	free(p);
	s->priv = NULL;
}

static int check_header(struct cow_store *s, struct pk_store *p)
{
	struct pk_header disk;
	uint32_t crc;
	int r;

	r = pread_full(s->cow_fd, &disk, sizeof(disk), 0);
	if (r)
		return cow_store_error(s, r, "cannot read the header: %s", strerror(-r));
	if (memcmp(disk.magic, PK_MAGIC, 8))
		return cow_store_error(s, -EINVAL, "not a packed store (bad magic)");
	if (le32toh(disk.crc) != header_crc(&disk))
		return cow_store_error(s, -EINVAL, "corrupt packed store: bad header checksum");
	header_from_disk(&disk, &p->h);
	if (p->h.version < 1 || p->h.version > PK_VERSION)
		return cow_store_error(s, -EINVAL, "packed store version %u is not supported (1 to %u are)",
				       p->h.version, PK_VERSION);
	if (p->h.version < 3)
		memset(p->h.base_id, 0, sizeof(p->h.base_id));
	p->h.base_id[sizeof(p->h.base_id) - 1] = 0;
	if (p->h.version < PK_GROWN_VERSION)
		p->h.dev_sectors = 0;
	else if (p->h.dev_sectors <= p->h.base_sectors || p->h.dev_sectors > PK_MAX_DEV_SECTORS)
		return cow_store_error(s, -EINVAL, "corrupt packed store: grown to %llu sectors over a base of %llu",
				       (unsigned long long)p->h.dev_sectors,
				       (unsigned long long)p->h.base_sectors);
	if (p->h.chunk_sectors != s->chunk_sectors)
		return cow_store_error(s, -EINVAL, "the store was made for %u-sector chunks, the device uses %u",
				       p->h.chunk_sectors, s->chunk_sectors);
	if (p->h.base_sectors != s->base_size / COW_SECTOR)
		return cow_store_error(s, -EINVAL, "the store was made for a base of %llu sectors, this base has %llu",
				       (unsigned long long)p->h.base_sectors,
				       (unsigned long long)(s->base_size / COW_SECTOR));
	if (p->h.base_id_bytes > PK_BASE_ID_BYTES || p->h.base_id_bytes > s->base_size)
		return cow_store_error(s, -EINVAL, "corrupt packed store: bad base identity");
	r = base_identity(s, p->h.base_id_bytes, &crc);
	if (r)
		return cow_store_error(s, r, "cannot read the base: %s", strerror(-r));
	if (crc != p->h.base_crc)
		return cow_store_error(s, -EINVAL, "the store was made for another base (its first %u bytes differ)",
				       p->h.base_id_bytes);
	if (p->h.version >= 2) {
		r = base_samples(s, &crc);
		if (r)
			return cow_store_error(s, r, "cannot read the base: %s", strerror(-r));
		if (crc != p->h.base_sample_crc)
			return cow_store_error(s, -EINVAL,
					       "the store was made for another base (its first %u bytes match, but samples across it differ: a changed base?)",
					       p->h.base_id_bytes);
	}
	if (!layout_fits(&p->h, s->cow_size / COW_SECTOR))
		return cow_store_error(s, -EINVAL, "corrupt packed store: its layout does not fit the device");
	return 0;
}

static int pk_open(struct cow_store *s)
{
	struct pk_store *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	s->priv = p;
	p->area_unknown = 1;
	/*
	 * An earlier process's writes may still be in the page cache: make
	 * them durable before anything is decided by them.
	 */
	r = s->read_only || fdatasync(s->cow_fd) == 0 ? 0 :
	    cow_store_error(s, -errno, "cannot sync the store before reading it: %s", strerror(errno));
	if (!r)
		r = check_header(s, p);
	if (!r) {
		p->used = calloc(p->h.nr_slots / 64 + 1, sizeof(*p->used));
		if (!p->used)
			r = -ENOMEM;
	}
	if (!r)
		r = replay(s, p);
	if (!r && p->h.dev_sectors)
		s->dev_size = p->h.dev_sectors * COW_SECTOR;
	if (r)
		pk_close(s);
	return r;
}

static uint64_t slot_sector(const struct pk_store *p, uint64_t slot)
{
	return p->h.data_start + slot * p->h.chunk_sectors;
}

static int pk_locate(struct cow_store *s, uint64_t chunk, uint64_t *sector, int *data_valid)
{
	struct pk_store *p = s->priv;
	uint64_t slot;

	if (map_get(&p->map, chunk, &slot)) {
		*sector = slot_sector(p, slot);
		*data_valid = 1;
		return 0;
	}
	slot = free_slot(p);
	if (slot >= p->h.nr_slots)
		return cow_store_error(s, -ENOSPC, "the store is full (%llu chunks)",
				       (unsigned long long)p->h.nr_slots);
	slot_take(p, slot);
	*sector = slot_sector(p, slot);
	*data_valid = 0;
	return 0;
}

/*
 * The lowest run of free slots, up to @max long, leaving a sixteenth of
 * the store (at least one slot) to locate(): a fault raised before the
 * kernel had grants must still find one.
 */
static int pk_grant(struct cow_store *s, uint64_t max, uint64_t *sector, uint64_t *count)
{
	struct pk_store *p = s->priv;
	uint64_t first = free_slot(p), left = p->h.nr_slots - p->nr_used, n;
	uint64_t keep = p->h.nr_slots / 16 ? p->h.nr_slots / 16 : 1;
	uint64_t room = left > keep ? left - keep : 0;

	if (max > room)
		max = room;
	if (first >= p->h.nr_slots || !max)
		return cow_store_error(s, -ENOSPC, "the store is nearly full (%llu chunks)",
				       (unsigned long long)p->h.nr_slots);
	for (n = 0; n < max && first + n < p->h.nr_slots && !slot_used(p, first + n); n++)
		slot_take(p, first + n);
	*sector = slot_sector(p, first);
	*count = n;
	return 0;
}

static void pk_ungrant(struct cow_store *s, uint64_t sector, uint64_t count)
{
	struct pk_store *p = s->priv;
	uint64_t first = (sector - p->h.data_start) / p->h.chunk_sectors, i;

	for (i = first; i < first + count && i < p->h.nr_slots; i++) {
		if (slot_used(p, i)) {
			p->used[i / 64] &= ~(1ULL << i % 64);
			p->nr_used--;
		}
	}
	if (first < p->next_slot)
		p->next_slot = first;
}

/* The data slot at @sector, or -EINVAL with s->error set. */
static int sector_slot(struct cow_store *s, struct pk_store *p, uint64_t chunk, uint64_t sector,
		       uint64_t *slot)
{
	*slot = sector >= p->h.data_start ? (sector - p->h.data_start) / p->h.chunk_sectors : 0;
	if (sector < p->h.data_start || (sector - p->h.data_start) % p->h.chunk_sectors ||
	    *slot >= p->h.nr_slots)
		return cow_store_error(s, -EINVAL, "chunk %llu reported at sector %llu, not a data slot",
				       (unsigned long long)chunk, (unsigned long long)sector);
	return 0;
}

/* A slot an earlier daemon gave out, still being filled: never give it again. */
static int pk_hold(struct cow_store *s, uint64_t chunk, uint64_t sector)
{
	struct pk_store *p = s->priv;
	uint64_t slot;
	int r;

	r = sector_slot(s, p, chunk, sector, &slot);
	if (!r)
		slot_take(p, slot);
	return r;
}

static int pk_mark(struct cow_store *s, uint64_t chunk, uint64_t sector)
{
	struct pk_store *p = s->priv;
	uint64_t slot, cur;
	int r;

	r = sector_slot(s, p, chunk, sector, &slot);
	if (r)
		return r;
	if (map_get(&p->map, chunk, &cur)) {
		if (cur == slot)
			return 0;
		return cow_store_error(s, -EEXIST, "chunk %llu reported at slot %llu but lives in slot %llu",
				       (unsigned long long)chunk, (unsigned long long)slot,
				       (unsigned long long)cur);
	}
	return load_record(p, chunk, slot);
}

/*
 * After a torn end: a whole checkpoint takes the torn commit's number;
 * then nothing in the ring is needed, and zeroing it (torn or not: what
 * it could complete is dead) keeps the next open from finding a torn end.
 */
static int restart_journal(struct cow_store *s, struct pk_store *p)
{
	static const char zero[PK_BLOCK];
	uint64_t b;
	int r;

	r = write_checkpoint(s, p);
	if (r)
		return r;
	p->torn_end = 0;
	/* Nothing allocated after the first write: an upgrade must not stop half way. */
	for (b = 0; b < p->h.journal_blocks && !r; b++)
		r = pwrite_full(s->cow_fd, zero, PK_BLOCK, p->h.journal_start * COW_SECTOR + b * PK_BLOCK);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		p->torn_end = 1;
		p->area_unknown = 1;
		return cow_store_error(s, r, "cannot clear the journal: %s", strerror(-r));
	}
	return 0;
}

/*
 * A store of version 3 or older, moving to the ring: a checkpoint of every
 * mapping (the pending ones too: it is their commit) outranks every block
 * of its linear journal, which is then zeroed (its blocks are not where a
 * ring has them); then the header says the journal is a ring.  A cut
 * before the header leaves the old version with that checkpoint.
 */
static int upgrade(struct cow_store *s, struct pk_store *p)
{
	struct pk_header h = p->h;
	int r;

	if (h.version < 2) {
		r = base_samples(s, &h.base_sample_crc);
		if (r)
			return cow_store_error(s, r, "cannot read the base: %s", strerror(-r));
	}
	r = restart_journal(s, p);
	if (r)
		return r;
	h.version = PK_MADE_VERSION;
	r = write_header(s, &h);
	if (!r)
		p->h = h;
	return r;
}

/* Clear the header block of the next checkpoint area (see the top). */
static int clear_next_area(struct cow_store *s, struct pk_store *p)
{
	static const char zero[PK_BLOCK];
	int r;

	r = pwrite_full(s->cow_fd, zero, PK_BLOCK, p->h.ckpt_start[p->ckpt_next] * COW_SECTOR);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r)
		return cow_store_error(s, r, "cannot clear a checkpoint area: %s", strerror(-r));
	p->area_unknown = 0;
	return 0;
}

/*
 * The mappings made since the last commit as journal blocks after p->seq, in one write with
 * the job's next piece, and one sync.  A journal block may only replace
 * one the durable checkpoint covers; the job finishes (on time, see
 * job_due()) before the ring runs out, so no commit writes the whole map
 * unless it is itself too large for the journal.
 */
static int pk_commit(struct cow_store *s)
{
	struct pk_store *p = s->priv;
	uint64_t ring = p->h.journal_blocks, blocks, b;
	size_t pending = p->map.n - p->map.committed, done = p->map.committed;
	char *buf;
	int r;

	if (!pending)
		return 0;
	if (p->area_unknown) {
		r = clear_next_area(s, p);
		if (r)
			return r;
	}
	if (p->h.version < PK_RING_VERSION)
		return upgrade(s, p);
	if (p->torn_end)
		return restart_journal(s, p);
	blocks = (pending + PK_RECS - 1) / PK_RECS;
	if (p->seq + blocks > p->ckpt_seq + ring && p->job.active) {
		/* Commits came faster than the job's pace: finish it now. */
		r = job_finish(s, p);
		if (r)
			return r;
	}
	if (p->seq + blocks > p->ckpt_seq + ring)
		return write_checkpoint(s, p);
	buf = calloc(blocks, PK_BLOCK);
	if (!buf)
		return -ENOMEM;
	for (b = 0; b < blocks; b++) {
		struct pk_jhdr *j = (struct pk_jhdr *)(buf + b * PK_BLOCK);
		struct pk_rec *rec = (struct pk_rec *)(j + 1);
		size_t n = p->map.n - done < PK_RECS ? p->map.n - done : PK_RECS, k;

		for (k = 0; k < n; k++) {
			rec[k].chunk = htole64(p->map.rec[done + k].chunk);
			rec[k].slot = htole64(p->map.rec[done + k].slot);
		}
		done += n;
		j->magic = htole32(PK_JMAGIC);
		j->seq = htole64(p->seq + 1 + b);
		j->commit = htole64(p->commit + 1);
		j->count = htole32((uint32_t)n);
		j->flags = htole32(b == blocks - 1 ? PK_LAST : 0);
		j->crc = htole32(block_crc(p, j, PK_BLOCK, &j->crc));
	}
	r = p->job.active ? job_write(s, p, job_due(p, p->seq + blocks)) : 0;
	if (!r)
		r = journal_write(s, p, buf, p->seq + 1, blocks);
	free(buf);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		/* What reached the device is unknown: never write it again. */
		p->torn_end = 1;
		p->area_unknown = 1;
		job_drop(p);
		return cow_store_error(s, r, "cannot write the journal: %s", strerror(-r));
	}
	p->seq += blocks;
	p->commit++;
	p->map.committed = p->map.n;
	if (p->job.active && p->job.written == p->job.blocks)
		job_durable(p);
	else if (!p->job.active && p->seq - p->ckpt_seq >= ring / 2)
		job_begin(s, p, p->map.n, p->seq, p->commit); /* a crafted map that cannot fit fails later */
	return 0;
}

/* Runs of data slots no committed mapping uses. */
static int pk_for_each_unused(struct cow_store *s, cow_range_fn fn, void *ctx)
{
	struct pk_store *p = s->priv;
	uint64_t words = (p->h.nr_slots + 63) / 64, slot, first, i;
	uint64_t *mapped = calloc(words ? words : 1, sizeof(*mapped));
	int r = 0;

	if (!mapped)
		return -ENOMEM;
	for (i = 0; i < p->map.n; i++)
		mapped[p->map.rec[i].slot / 64] |= 1ULL << p->map.rec[i].slot % 64;
	for (slot = 0; slot < p->h.nr_slots && !r;) {
		if (mapped[slot / 64] >> slot % 64 & 1) {
			slot++;
			continue;
		}
		for (first = slot; slot < p->h.nr_slots && !(mapped[slot / 64] >> slot % 64 & 1);)
			slot++;
		r = fn(ctx, slot_sector(p, first), (slot - first) * p->h.chunk_sectors);
	}
	free(mapped);
	return r;
}

static int cmp_rec(const void *a, const void *b)
{
	const struct pk_rec *x = a, *y = b;

	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

static int pk_for_each_mapping(struct cow_store *s, cow_mapping_fn fn, void *ctx)
{
	struct pk_store *p = s->priv;
	struct pk_rec *all = malloc((p->map.n ? p->map.n : 1) * sizeof(*all));
	size_t i;
	int r = 0;

	if (!all)
		return -ENOMEM;
	if (p->map.n)
		memcpy(all, p->map.rec, p->map.n * sizeof(*all));
	qsort(all, p->map.n, sizeof(*all), cmp_rec);
	for (i = 0; i < p->map.n && !r; i++)
		r = fn(ctx, all[i].chunk, slot_sector(p, all[i].slot));
	free(all);
	return r;
}

static uint64_t pk_data_phase(struct cow_store *s)
{
	return 0; /* data_start is chunk aligned */
}

static uint64_t pk_used_bytes(struct cow_store *s)
{
	struct pk_store *p = s->priv;

	return (p->h.data_start + p->nr_used * p->h.chunk_sectors) * COW_SECTOR;
}

static int pk_inspect(const void *head, size_t len, struct cow_store_info *info)
{
	struct pk_header h;

	if (len < sizeof(h))
		return -EINVAL;
	header_from_disk(head, &h);
	info->chunk_sectors = h.chunk_sectors;
	info->base_path[0] = 0;	/* the header identifies the base, not its path */
	info->base_id[0] = 0;
	if (h.version >= 3)
		snprintf(info->base_id, sizeof(info->base_id), "%.*s", (int)sizeof(h.base_id) - 1,
			 h.base_id);
	if (h.version >= PK_GROWN_VERSION && h.dev_sectors <= PK_MAX_DEV_SECTORS)
		info->dev_size = h.dev_sectors * COW_SECTOR;
	return 0;
}

/*
 * Grow the device the store holds (cowctl resize): its size goes in the
 * header, made version 5, in one sector's write.  Slots do not depend on
 * chunk numbers, so nothing else changes; a power cut leaves the old size
 * or the new.  The base's partial last chunk's slot reads as zeros past
 * the base's end: a kernel module before this one filled only its part.
 * The slots stay as many as the store was made with (its checkpoint areas
 * hold that many mappings): about the base's chunks for a file store, so
 * a grown device's first writes fail with ENOSPC once that many chunks
 * are mapped.
 */
static int pk_grow(struct cow_store *s, uint64_t size)
{
	struct pk_store *p = s->priv;
	uint64_t sectors = size / COW_SECTOR, tail = p->h.base_sectors % s->chunk_sectors, slot;
	struct pk_header h = p->h;
	int r;

	if (sectors <= (p->h.dev_sectors ? p->h.dev_sectors : p->h.base_sectors))
		return 0;
	if (sectors > PK_MAX_DEV_SECTORS)
		return cow_store_error(s, -EFBIG, "a device of %llu bytes is more than dm-cow serves",
				       (unsigned long long)size);
	if (p->h.version < PK_RING_VERSION)
		return cow_store_error(s, -EOPNOTSUPP,
				       "a packed store of version %u grows once it has moved to version 4 (at its first commit with data)",
				       p->h.version);
	if (tail && !p->h.dev_sectors &&
	    map_get(&p->map, p->h.base_sectors / s->chunk_sectors, &slot)) {
		uint64_t n = (s->chunk_sectors - tail) * COW_SECTOR;
		char *zero = calloc(1, n);

		if (!zero)
			return -ENOMEM;
		r = pwrite_full(s->cow_fd, zero, n, (slot_sector(p, slot) + tail) * COW_SECTOR);
		free(zero);
		if (!r && fdatasync(s->cow_fd) < 0)
			r = -errno;
		if (r)
			return cow_store_error(s, r, "cannot zero the last chunk past the base: %s",
					       strerror(-r));
	}
	h.version = PK_GROWN_VERSION;
	h.dev_sectors = sectors;
	r = write_header(s, &h);
	if (r)
		return r;
	p->h = h;
	s->dev_size = sectors * COW_SECTOR;
	return 0;
}

static const struct cow_plugin packed_plugin = {
	.api_version = COW_PLUGIN_API_VERSION,
	.size = sizeof(struct cow_plugin),
	.name = "packed",
	.description = "native packed store: chunks allocated in order, crc32c journal",
	.probe = pk_probe,
	.create = pk_create,
	.open = pk_open,
	.close = pk_close,
	.locate = pk_locate,
	.mark = pk_mark,
	.commit = pk_commit,
	.for_each_mapping = pk_for_each_mapping,
	.data_phase = pk_data_phase,
	.used_bytes = pk_used_bytes,
	.inspect = pk_inspect,
	.hold = pk_hold,
	.grant = pk_grant,
	.ungrant = pk_ungrant,
	.for_each_unused = pk_for_each_unused,
	.grow = pk_grow,
};

COW_PLUGIN_REGISTER(packed_plugin)
