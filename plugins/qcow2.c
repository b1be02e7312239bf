// SPDX-License-Identifier: GPL-2.0-only
/*
 * The qcow2 store: the CoW store is a qcow2 image whose backing file is the
 * base, so qemu-img, QEMU and libvirt can use it afterwards.
 *
 * Cluster size = chunk size.  New clusters (data and L2 tables) are taken
 * at the end of the image, in order, so first writes that follow each other
 * get consecutive clusters and coalesce into linear segments.  A loop device
 * over the image is grown as it fills (store_grow()).
 *
 * Crash consistency (qemu-img check must never find corruption, at most
 * leaked clusters): commit() writes, with a sync after each step,
 *   1. the refcounts of the new clusters (and new refcount blocks),
 *   2. the L2 entries (cowd has made the clusters' data durable before),
 *      one write per table,
 *   3. the L1 entries of new L2 tables, a write per run of them.
 * A crash leaves clusters counted but unused (leaks), never the reverse.
 * The same rule inside step 1: a new refcount block is pointed at only
 * once its own refcount is durable, and a grown refcount table only once
 * it and the blocks that count it are (see grow_refcount_table()).
 * tests/unit/test-qcow2-refcount replays power cuts at every write.
 *
 * L2 tables are kept in memory once read (up to 32 MiB, as qemu's cache),
 * and updated by commits: reloads list the mappings without I/O.
 *
 * Capacity: locate() and grant() make sure the store can hold the clusters
 * and all the metadata their commit may add (L2 tables, refcount blocks, a
 * grown refcount table), so a store that cannot grow fails a first write
 * with ENOSPC before anything is copied, and a commit never runs out of
 * space.  Granted clusters may be used by any chunk: room stays kept for
 * the L2 tables they may need until mark() takes them (room_for()).
 *
 * Version 3 and version 2 (compat=0.10) images are read and written alike
 * (a version 2 image has no zero clusters nor feature bits).  Compressed clusters, encryption, external data
 * files, extended L2 entries, internal snapshots, dirty (lazy refcount)
 * images and refcounts other than 16 bits are refused by name.  Zero
 * clusters are turned into allocated clusters of zeros when the image is
 * opened for writing, since a chunk is either the base's or has a location.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cow-plugin.h"
#include "cow-store.h"

#define Q2_MAGIC 0x514649fbU /* "QFI\xfb" */
#define Q2_HEADER_V2 72
#define Q2_HEADER_V3 104
#define Q2_EXT_BACKING_FORMAT 0xe2792acaU
#define Q2_OFFSET_MASK 0x00fffffffffffe00ULL
#define Q2_COPIED (1ULL << 63)
#define Q2_COMPRESSED (1ULL << 62)
#define Q2_ZERO 1ULL
#define Q2_MAX_CLUSTER_BITS 21
#define Q2_MAX_BACKING_NAME 1023		/* as qemu */
#define Q2_MAX_L1_BYTES (32ULL << 20)		/* QCOW_MAX_L1_SIZE */
#define Q2_MAX_REFTABLE_BYTES (8ULL << 20)	/* QCOW_MAX_REFTABLE_SIZE */
#define Q2_REFCOUNT_ORDER 4 /* 16-bit refcounts, the default */
#define Q2_L2_CACHE_MAX (32ULL << 20)	/* qemu's largest default l2-cache-size */

/* Incompatible feature bits (qcow2 v3). */
#define Q2_INCOMPAT_DIRTY (1ULL << 0)
#define Q2_INCOMPAT_CORRUPT (1ULL << 1)
#define Q2_INCOMPAT_DATA_FILE (1ULL << 2)
#define Q2_INCOMPAT_COMPRESSION (1ULL << 3)
#define Q2_INCOMPAT_EXTL2 (1ULL << 4)

struct q2_header {
	uint32_t magic;
	uint32_t version;
	uint64_t backing_file_offset;
	uint32_t backing_file_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	/* version 3 */
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	uint32_t refcount_order;
	uint32_t header_length;
} __attribute__((packed));

_Static_assert(sizeof(struct q2_header) == Q2_HEADER_V3, "qcow2 v3 header size");

struct q2_pending {
	uint64_t chunk, offset;
	uint64_t seq;		/* order of marking */
};

/* A run of clusters grant() handed out; @left of them not marked yet. */
struct q2_grant {
	uint64_t first, n, left;	/* bytes, clusters, clusters */
};

struct q2 {
	uint32_t version;
	uint64_t cs;		/* cluster size, bytes */
	uint64_t l2_entries;	/* per L2 table */
	uint64_t *l1;		/* host order; 0: no L2 table */
	uint64_t *l1_new;	/* L2 tables made since the last commit */
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *rt;		/* refcount table, host order */
	uint64_t rt_entries;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint64_t rt_full;	/* every block below this one exists */
	uint64_t refs_per_block;
	uint64_t next_free;	/* first byte past every allocated cluster */
	/* [opened_end, zero_end): the clusters open gave to zero clusters */
	uint64_t opened_end, zero_end;
	uint64_t nr_mapped;
	/*
	 * A bit per chunk of the base: the committed image maps it.  locate()
	 * reads an L2 entry only for those (a write before cowd loaded the
	 * store), never for the fresh chunks of the fast path.
	 */
	uint8_t *mapped;
	uint64_t nchunks;
	uint64_t size;		/* the virtual size, bytes */
	struct q2_pending *pending;
	size_t npending, maxpending;
	/*
	 * Granted clusters may map chunks whose L2 table does not exist yet:
	 * room stays kept for min(granted, tables_missing) tables, so that
	 * mark() can always take one (see room_for()).
	 */
	struct q2_grant *grants;
	size_t ngrants, maxgrants;
	uint64_t granted;		/* clusters granted and not marked */
	uint64_t tables_missing;	/* L1 entries with no table, not even a new one */
	/*
	 * L2 tables as on disk (big endian), by L1 index, as read and as
	 * committed since; at most Q2_L2_CACHE_MAX bytes, the rest are read
	 * when needed.  Reloads list the mappings from here, without I/O.
	 */
	uint64_t **l2c;
	uint64_t l2c_bytes;
};

static void set_mapped(struct q2 *q, uint64_t chunk)
{
	if (chunk < q->nchunks)
		q->mapped[chunk / 8] |= 1 << chunk % 8;
}

static int is_mapped(const struct q2 *q, uint64_t chunk)
{
	return chunk >= q->nchunks || q->mapped[chunk / 8] & 1 << chunk % 8;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* @len bytes at @buf, at least Q2_HEADER_V2; fields past them read as 0. */
static void header_from_disk(const void *buf, size_t len, struct q2_header *h, int *v2)
{
	memset(h, 0, sizeof(*h));
	memcpy(h, buf, len < sizeof(*h) ? len : sizeof(*h));
	h->magic = be32toh(h->magic);
	h->version = be32toh(h->version);
	h->backing_file_offset = be64toh(h->backing_file_offset);
	h->backing_file_size = be32toh(h->backing_file_size);
	h->cluster_bits = be32toh(h->cluster_bits);
	h->size = be64toh(h->size);
	h->crypt_method = be32toh(h->crypt_method);
	h->l1_size = be32toh(h->l1_size);
	h->l1_table_offset = be64toh(h->l1_table_offset);
	h->refcount_table_offset = be64toh(h->refcount_table_offset);
	h->refcount_table_clusters = be32toh(h->refcount_table_clusters);
	h->nb_snapshots = be32toh(h->nb_snapshots);
	h->snapshots_offset = be64toh(h->snapshots_offset);
	*v2 = h->version == 2;
	if (*v2) {
		h->incompatible_features = h->compatible_features = h->autoclear_features = 0;
		h->refcount_order = Q2_REFCOUNT_ORDER;
		h->header_length = Q2_HEADER_V2;
		return;
	}
	h->incompatible_features = be64toh(h->incompatible_features);
	h->compatible_features = be64toh(h->compatible_features);
	h->autoclear_features = be64toh(h->autoclear_features);
	h->refcount_order = be32toh(h->refcount_order);
	h->header_length = be32toh(h->header_length);
}

static int q2_probe(const void *head, size_t len)
{
	uint32_t magic;

	if (len < 4)
		return 0;
	memcpy(&magic, head, 4);
	return be32toh(magic) == Q2_MAGIC;
}

static int q2_inspect(const void *head, size_t len, struct cow_store_info *info)
{
	struct q2_header h;
	int v2;

	if (len < Q2_HEADER_V2)
		return -EINVAL;
	header_from_disk(head, len, &h, &v2);
	if (h.cluster_bits < 9 || h.cluster_bits > Q2_MAX_CLUSTER_BITS)
		return -EINVAL;
	info->chunk_sectors = (1U << h.cluster_bits) / COW_SECTOR;
	info->dev_size = h.size;
	info->base_path[0] = 0;
	if (h.backing_file_offset && h.backing_file_size) {
		if (h.backing_file_size >= sizeof(info->base_path) ||
		    h.backing_file_offset > len || h.backing_file_size > len - h.backing_file_offset)
			return -ENAMETOOLONG;
		memcpy(info->base_path, (const char *)head + h.backing_file_offset,
		       h.backing_file_size);
		info->base_path[h.backing_file_size] = 0;
	}
	return 0;
}

/* ---- refcounts ---------------------------------------------------------- */

/*
 * The refcount table grows by half again, and at least to address block
 * @need; the result in entries, rounded up to whole clusters.
 */
static uint64_t grown_entries(const struct q2 *q, uint64_t need)
{
	uint64_t per_cluster = q->cs / 8, want = q->rt_entries + q->rt_entries / 2;

	if (want < need + 1)
		want = need + 1;
	return div_up(want, per_cluster) * per_cluster;
}

/* Refcount blocks in [from, to) that do not exist yet. */
static uint64_t missing_blocks(struct q2 *q, uint64_t from, uint64_t to)
{
	uint64_t b, n = 0;

	while (q->rt_full < q->rt_entries && q->rt[q->rt_full])
		q->rt_full++;
	if (from < q->rt_full)
		from = q->rt_full;
	for (b = from; b < to; b++)
		if (b >= q->rt_entries || !q->rt[b])
			n++;
	return n;
}

/*
 * The clusters a commit may still take past byte @end for refcounts: the
 * blocks that count the clusters up to there (and themselves), and a grown
 * refcount table with the blocks that count it.  locate() makes room for
 * them before it hands out a cluster, so a commit never runs out of space.
 */
static uint64_t refcount_reserve(struct q2 *q, uint64_t end)
{
	uint64_t clusters = div_up(end, q->cs), extra = 0, want, hi;
	int i;

	for (i = 0; i < 64; i++) {
		hi = div_up(clusters + extra, q->refs_per_block);
		want = missing_blocks(q, 0, hi);
		if (hi > q->rt_entries) {
			uint64_t t = div_up(grown_entries(q, hi) * 8, q->cs);

			want += t + div_up(t, q->refs_per_block) + 1;
		}
		if (want <= extra)
			break;
		extra = want;
	}
	return extra;
}

static int ensure_space(struct cow_store *s, struct q2 *q)
{
	return store_grow(s, q->next_free);
}

static int set_refcounts(struct cow_store *s, struct q2 *q, uint64_t first, uint64_t n,
			 uint16_t ref);

/*
 * Grow the refcount table to address block @need, as qemu does: a larger
 * table and the refcount blocks that count it go at the end of the image,
 * made durable before anything points at them; one header write (offset
 * and size share a sector) switches tables; then the old table's clusters
 * are freed.  A power cut leaves the old table in use or the new one
 * complete, and leaks at most.
 */
static int grow_refcount_table(struct cow_store *s, struct q2 *q, uint64_t need)
{
	uint64_t rpb = q->refs_per_block, start = div_up(q->next_free, q->cs);
	uint64_t entries = grown_entries(q, need), n, k = 0, end, b, j, c;
	uint64_t old_offset = q->rt_offset, old_clusters = q->rt_clusters;
	uint64_t *table = NULL, offset_be, at;
	uint32_t clusters_be;
	uint16_t *block = NULL;
	char header[12];
	int r = 0;

	/* The area: n table clusters, then k new blocks that count the area. */
	for (;;) {
		n = div_up(entries * 8, q->cs);
		end = start + n + k;
		c = missing_blocks(q, start / rpb, div_up(end, rpb));
		if (c == k && div_up(end, rpb) <= entries)
			break;
		k = c;
		if (div_up(start + n + k, rpb) > entries)
			entries = div_up(div_up(start + n + k, rpb) + 1, q->cs / 8) * (q->cs / 8);
	}
	if (entries * 8 > Q2_MAX_REFTABLE_BYTES)
		return cow_store_error(s, -ENOSPC, "the image's refcount table cannot grow past %llu MiB",
				       Q2_MAX_REFTABLE_BYTES >> 20);
	q->next_free = end * q->cs;
	r = ensure_space(s, q);
	if (r)
		return r;
	table = calloc(n, q->cs);
	block = malloc(q->cs);
	if (!table || !block) {
		r = -ENOMEM;
		goto out;
	}
	for (b = 0; b < q->rt_entries; b++)
		table[b] = htobe64(q->rt[b]);
	/* The new blocks, each with the refcounts of the area it covers. */
	j = 0;
	for (b = start / rpb; b < div_up(end, rpb) && !r; b++) {
		if (b < q->rt_entries && q->rt[b])
			continue;
		at = (start + n + j++) * q->cs;
		table[b] = htobe64(at);
		memset(block, 0, q->cs);
		for (c = b * rpb > start ? b * rpb : start; c < end && c < (b + 1) * rpb; c++)
			block[c % rpb] = htobe16(1);
		r = pwrite_full(s->cow_fd, block, q->cs, at);
	}
	if (!r)
		r = pwrite_full(s->cow_fd, table, n * q->cs, start * q->cs);
	/* Area clusters in blocks that exist: counted in place. */
	for (b = start / rpb; b < q->rt_entries && b < div_up(end, rpb) && !r; b++) {
		uint64_t lo = b * rpb > start ? b * rpb : start, hi = (b + 1) * rpb < end ? (b + 1) * rpb : end;

		if (q->rt[b])
			r = set_refcounts(s, q, lo, hi - lo, 1);
	}
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		cow_store_error(s, r, "cannot write a grown refcount table: %s", strerror(-r));
		goto out;
	}
	offset_be = htobe64(start * q->cs);
	clusters_be = htobe32((uint32_t)n);
	memcpy(header, &offset_be, 8);
	memcpy(header + 8, &clusters_be, 4);
	r = pwrite_full(s->cow_fd, header, 12, offsetof(struct q2_header, refcount_table_offset));
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		cow_store_error(s, r, "cannot switch to the grown refcount table: %s", strerror(-r));
		goto out;
	}
	for (b = 0; b < entries; b++)
		table[b] = be64toh(table[b]);
	free(q->rt);
	q->rt = table;
	table = NULL;
	q->rt_offset = start * q->cs;
	q->rt_clusters = (uint32_t)n;
	q->rt_entries = entries;
	/* The old table is garbage now; a cut before this leaks it. */
	r = set_refcounts(s, q, old_offset / q->cs, old_clusters, 0);
out:
	free(table);
	free(block);
	return r;
}

/*
 * A refcount block for table slot @block.  Nothing points at it until its
 * own refcount is durable: a block that counts itself is written with it;
 * otherwise the block that counts it is updated (made first if need be)
 * and synced.  Then the table entry is written; the caller's next sync
 * makes it durable before anything counted in the block is used.
 */
static int new_refcount_block(struct cow_store *s, struct q2 *q, uint64_t block)
{
	uint64_t off = q->next_free, own = off / q->cs, v;
	int self = own / q->refs_per_block == block;
	char *zero = calloc(1, q->cs);
	int r;

	if (!zero)
		return -ENOMEM;
	q->next_free += q->cs;
	r = ensure_space(s, q);
	if (!r && self)
		((uint16_t *)zero)[own % q->refs_per_block] = htobe16(1);
	if (!r)
		r = pwrite_full(s->cow_fd, zero, q->cs, off);
	free(zero);
	if (r)
		return cow_store_error(s, r, "cannot write a refcount block: %s", strerror(-r));
	if (!self) {
		r = set_refcounts(s, q, own, 1, 1);
		if (r)
			return r;
	}
	if (fdatasync(s->cow_fd) < 0)
		return cow_store_error(s, -errno, "cannot sync a refcount block: %s", strerror(errno));
	/* A grown table has a slot for @block too: it only grows. */
	v = htobe64(off);
	r = pwrite_full(s->cow_fd, &v, 8, q->rt_offset + block * 8);
	if (r)
		return cow_store_error(s, r, "cannot write the refcount table: %s", strerror(-r));
	q->rt[block] = off;
	return 0;
}

/* Refcounts of clusters [first, first + n) set to @ref: one write per block. */
static int set_refcounts(struct cow_store *s, struct q2 *q, uint64_t first, uint64_t n,
			 uint16_t ref)
{
	uint16_t buf[512];
	uint64_t block, m, i;
	int r;

	for (i = 0; i < sizeof(buf) / 2; i++)
		buf[i] = htobe16(ref);
	while (n) {
		block = first / q->refs_per_block;
		m = q->refs_per_block - first % q->refs_per_block;
		if (m > n)
			m = n;
		if (m > sizeof(buf) / 2)
			m = sizeof(buf) / 2;
		if (block >= q->rt_entries) {
			r = grow_refcount_table(s, q, block);
			if (r)
				return r;
		}
		if (!q->rt[block]) {
			r = new_refcount_block(s, q, block);
			if (r)
				return r;
		}
		r = pwrite_full(s->cow_fd, buf, m * 2, q->rt[block] + (first % q->refs_per_block) * 2);
		if (r)
			return cow_store_error(s, r, "cannot write a refcount: %s", strerror(-r));
		first += m;
		n -= m;
	}
	return 0;
}

/* The first byte past the last cluster with a refcount. */
static int find_end(struct cow_store *s, struct q2 *q)
{
	uint16_t *block = malloc(q->cs);
	uint64_t b, i;
	int r = 0;

	if (!block)
		return -ENOMEM;
	q->next_free = q->cs;
	for (b = 0; b < q->rt_entries && !r; b++) {
		if (!q->rt[b])
			continue;
		if (q->rt[b] % q->cs) {
			r = cow_store_error(s, -EINVAL, "corrupt qcow2 image: refcount block %llu is not cluster aligned",
					    (unsigned long long)b);
			break;
		}
		r = pread_full(s->cow_fd, block, q->cs, q->rt[b]);
		for (i = 0; i < q->refs_per_block && !r; i++)
			if (block[i])
				q->next_free = (b * q->refs_per_block + i + 1) * q->cs;
	}
	free(block);
	return r;
}

/* ---- open ------------------------------------------------------------------- */

static int refuse(struct cow_store *s, const char *feature)
{
	return cow_store_error(s, -EINVAL, "qcow2 image uses %s, which dm-cow does not support",
			       feature);
}

/* [off, off + len) lies in [from, limit), computed without wrapping. */
static int area_fits(uint64_t off, uint64_t len, uint64_t from, uint64_t limit)
{
	return off >= from && off <= limit && len <= limit - off;
}

/*
 * Every size and offset of a header bounded, as qemu bounds them, before
 * anything is allocated or read by it: the header and the backing file
 * name in the first cluster, the L1 and refcount tables inside the file,
 * past the first cluster, apart from each other, and no larger than qemu
 * allows (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE).
 */
static int check_layout(struct cow_store *s, const struct q2_header *h)
{
	uint64_t cs = 1ULL << h->cluster_bits, l1_len = (uint64_t)h->l1_size * 8;
	uint64_t rt_len = (uint64_t)h->refcount_table_clusters * cs;

	if (h->version == 3 && (h->header_length < Q2_HEADER_V3 || h->header_length > cs))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: header length %u",
				       h->header_length);
	if (h->backing_file_offset &&
	    (h->backing_file_size > Q2_MAX_BACKING_NAME ||
	     !area_fits(h->backing_file_offset, h->backing_file_size, Q2_HEADER_V2, cs)))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: backing file name outside the first cluster");
	if (l1_len > Q2_MAX_L1_BYTES || !area_fits(h->l1_table_offset, l1_len, cs, s->cow_size))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: L1 table of %u entries at %llu does not fit",
				       h->l1_size, (unsigned long long)h->l1_table_offset);
	if (!h->refcount_table_clusters || rt_len > Q2_MAX_REFTABLE_BYTES ||
	    !area_fits(h->refcount_table_offset, rt_len, cs, s->cow_size))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: refcount table of %u clusters at %llu does not fit",
				       h->refcount_table_clusters,
				       (unsigned long long)h->refcount_table_offset);
	if (h->l1_table_offset < h->refcount_table_offset + rt_len &&
	    h->refcount_table_offset < h->l1_table_offset + l1_len)
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: the L1 and refcount tables overlap");
	return 0;
}

/* The largest virtual size an L1 table of qemu's largest size addresses. */
static uint64_t q2_max_size(uint32_t cluster_bits)
{
	return Q2_MAX_L1_BYTES / 8 << (cluster_bits - 3) << cluster_bits;
}

static int check_header(struct cow_store *s, const struct q2_header *h)
{
	uint64_t incompat = h->incompatible_features;

	if (h->magic != Q2_MAGIC)
		return cow_store_error(s, -EINVAL, "not a qcow2 image (bad magic)");
	if (h->version != 2 && h->version != 3)
		return cow_store_error(s, -EINVAL, "qcow2 version %u is not supported (2 and 3 are)",
				       h->version);
	if (h->cluster_bits < 9 || h->cluster_bits > Q2_MAX_CLUSTER_BITS)
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: cluster_bits %u",
				       h->cluster_bits);
	if ((1ULL << h->cluster_bits) != (uint64_t)s->chunk_sectors * COW_SECTOR)
		return cow_store_error(s, -EINVAL,
				       "the image has %llu-byte clusters, the device %llu-byte chunks (they must be equal)",
				       1ULL << h->cluster_bits,
				       (unsigned long long)s->chunk_sectors * COW_SECTOR);
	if (h->crypt_method)
		return refuse(s, "encryption");
	if (incompat & Q2_INCOMPAT_DATA_FILE)
		return refuse(s, "an external data file");
	if (incompat & Q2_INCOMPAT_EXTL2)
		return refuse(s, "extended L2 entries (subclusters)");
	if (incompat & Q2_INCOMPAT_COMPRESSION)
		return refuse(s, "a compression type other than zlib (compressed clusters)");
	if (incompat & Q2_INCOMPAT_CORRUPT)
		return cow_store_error(s, -EINVAL, "the qcow2 image is marked corrupt; repair it with qemu-img check -r all");
	if (incompat & Q2_INCOMPAT_DIRTY)
		return cow_store_error(s, -EINVAL, "the qcow2 image is dirty (lazy refcounts); repair it with qemu-img check -r all");
	if (incompat)
		return cow_store_error(s, -EINVAL, "qcow2 image uses unknown incompatible features (0x%llx)",
				       (unsigned long long)incompat);
	if (h->nb_snapshots)
		return refuse(s, "internal snapshots");
	if (h->refcount_order != Q2_REFCOUNT_ORDER)
		return cow_store_error(s, -EINVAL, "qcow2 image uses refcount order %u; only 4 (16-bit refcounts) is supported",
				       h->refcount_order);
	/* Larger is a grown image: past the base's end it reads zeros, as in qemu. */
	if (h->size > q2_max_size(h->cluster_bits))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: a virtual size of %llu bytes needs an L1 table over %llu MiB",
				       (unsigned long long)h->size, Q2_MAX_L1_BYTES >> 20);
	if (h->size < s->base_size)
		return cow_store_error(s, -EINVAL,
				       "the image's virtual size is %llu bytes, less than the base's %llu",
				       (unsigned long long)h->size, (unsigned long long)s->base_size);
	if (h->l1_table_offset % (1ULL << h->cluster_bits) ||
	    h->refcount_table_offset % (1ULL << h->cluster_bits))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: tables not cluster aligned");
	return check_layout(s, h);
}

/*
 * The format of the backing file from the header extensions in cluster 0
 * (from the end of the header to the backing name, as qemu reads them);
 * "" when the image does not say.
 */
static int backing_format(struct cow_store *s, const struct q2_header *h, char *fmt, size_t len)
{
	uint64_t cs = 1ULL << h->cluster_bits, off = h->header_length;
	uint64_t end = h->backing_file_offset ? h->backing_file_offset : cs;
	uint32_t ext[2];
	int r;

	fmt[0] = 0;
	if (end > cs)
		end = cs;
	while (off + 8 <= end) {
		r = pread_full(s->cow_fd, ext, 8, off);
		if (r)
			return cow_store_error(s, r, "cannot read the qcow2 header: %s", strerror(-r));
		ext[0] = be32toh(ext[0]);
		ext[1] = be32toh(ext[1]);
		if (!ext[0])
			return 0;
		off += 8;
		if (ext[1] > end - off)
			return cow_store_error(s, -EINVAL, "corrupt qcow2 image: header extension 0x%x overruns the header",
					       ext[0]);
		if (ext[0] == Q2_EXT_BACKING_FORMAT) {
			if (ext[1] >= len)
				return cow_store_error(s, -EINVAL, "corrupt qcow2 image: backing format name of %u bytes",
						       ext[1]);
			r = pread_full(s->cow_fd, fmt, ext[1], off);
			if (r)
				return cow_store_error(s, r, "cannot read the qcow2 header: %s", strerror(-r));
			fmt[ext[1]] = 0;
		}
		off += (ext[1] + 7ULL) & ~7ULL;
	}
	return 0;
}

/* Magics of image formats qemu would probe a backing file as. */
static const char *image_format_of(const char *head)
{
	static const struct { const char *magic; size_t len; const char *name; } known[] = {
		{ "QFI\xfb", 4, "qcow2" }, { "QED\0", 4, "qed" }, { "KDMV", 4, "vmdk" },
		{ "vhdxfile", 8, "vhdx" }, { "conectix", 8, "vpc" },
		{ "<<< Oracle VM VirtualBox Disk Image >>>", 39, "vdi" },
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!memcmp(head, known[i].magic, known[i].len))
			return known[i].name;
	return NULL;
}

/*
 * dm-cow reads the base raw, so the image must say so: a backing file
 * (else qemu reads zeros where dm-cow reads the base) whose format is raw,
 * or, when the image does not name the format, a base that does not look
 * like another image format (qemu would probe it as that).
 */
static int check_backing(struct cow_store *s, const struct q2_header *h)
{
	char fmt[32], head[64] = { 0 };
	const char *probed;
	int r;

	if (!h->backing_file_offset || !h->backing_file_size)
		return cow_store_error(s, -EINVAL,
				       "the image has no backing file: qemu reads zeros where dm-cow would read the base (set one with qemu-img rebase -u -b BASE -F raw)");
	r = backing_format(s, h, fmt, sizeof(fmt));
	if (r)
		return r;
	if (fmt[0] && strcmp(fmt, "raw"))
		return cow_store_error(s, -EINVAL,
				       "the image's backing file is a %s image; dm-cow's base is read raw (make a raw base with qemu-img convert -O raw)",
				       fmt);
	if (fmt[0] || s->base_fd < 0)
		return 0;
	if (pread(s->base_fd, head, sizeof(head), 0) < 0)
		return cow_store_error(s, -errno, "cannot read the base: %s", strerror(errno));
	probed = image_format_of(head);
	if (probed)
		return cow_store_error(s, -EINVAL,
				       "the base is a %s image and the image does not say its backing format; dm-cow reads the base raw (give it a raw base, or qemu-img rebase -u -F raw if it really is raw)",
				       probed);
	return 0;
}

static int read_be64_table(struct cow_store *s, uint64_t off, uint64_t n, uint64_t **out)
{
	uint64_t *t = calloc(n ? n : 1, 8), i;
	int r;

	if (!t)
		return -ENOMEM;
	r = n ? pread_full(s->cow_fd, t, n * 8, off) : 0;
	for (i = 0; i < n; i++)
		t[i] = be64toh(t[i]);
	if (r)
		free(t);
	else
		*out = t;
	return r;
}

static void q2_close(struct cow_store *s)
{
	struct q2 *q = s->priv;

	if (!q)
		return;
	free(q->l1);
	free(q->l1_new);
	free(q->rt);
	free(q->pending);
	free(q->grants);
	free(q->mapped);
	for (uint64_t i = 0; q->l2c && i < q->l1_size; i++)
		free(q->l2c[i]);
	free(q->l2c);
	free(q);
	s->priv = NULL;
}

/*
 * Call @fn for every L2 table of the image, with its entries as on disk
 * (big endian); stop at the first error.
 */
typedef int (*l2_table_fn)(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t l2_off,
			   const uint64_t *l2, void *ctx);

/*
 * The committed L2 table of L1 entry @l1i, as on disk: from the cache, or
 * read into @buf (and kept while the cache has room).
 */
static int load_l2(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t *buf,
		   const uint64_t **table)
{
	uint64_t l2_off = q->l1[l1i] & Q2_OFFSET_MASK;
	int r;

	if (q->l2c[l1i]) {
		*table = q->l2c[l1i];
		return 0;
	}
	if (l2_off % q->cs)
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: L2 table %llu not cluster aligned",
				       (unsigned long long)l1i);
	r = pread_full(s->cow_fd, buf, q->cs, l2_off);
	if (r)
		return cow_store_error(s, r, "cannot read an L2 table: %s", strerror(-r));
	*table = buf;
	if (q->l2c_bytes + q->cs <= Q2_L2_CACHE_MAX) {
		q->l2c[l1i] = malloc(q->cs);
		if (q->l2c[l1i]) {
			memcpy(q->l2c[l1i], buf, q->cs);
			q->l2c_bytes += q->cs;
			*table = q->l2c[l1i];
		}
	}
	return 0;
}

static int walk_l2(struct cow_store *s, struct q2 *q, l2_table_fn fn, void *ctx)
{
	uint64_t *buf = malloc(q->cs), i;
	const uint64_t *l2;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (i = 0; i < q->l1_size && !r; i++) {
		if (!q->l1[i])
			continue;
		r = load_l2(s, q, i, buf, &l2);
		if (!r)
			r = fn(s, q, i, q->l1[i] & Q2_OFFSET_MASK, l2, ctx);
	}
	free(buf);
	return r;
}

/* Zero clusters must read as zeros: give each a real cluster of zeros. */
static int materialize_zero(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t idx,
			    uint64_t entry, char *zero)
{
	uint64_t l2_off = q->l1[l1i] & Q2_OFFSET_MASK;
	uint64_t off = entry & Q2_OFFSET_MASK, v;
	int r = 0;

	if (!off) {
		off = q->next_free;
		q->next_free += q->cs;
		r = ensure_space(s, q);
		if (!r)
			r = set_refcounts(s, q, off / q->cs, 1, 1);
	}
	if (!r)
		r = pwrite_full(s->cow_fd, zero, q->cs, off);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	v = htobe64(off | Q2_COPIED);
	if (!r)
		r = pwrite_full(s->cow_fd, &v, 8, l2_off + idx * 8);
	if (r)
		return cow_store_error(s, r, "cannot allocate a zero cluster: %s", strerror(-r));
	if (q->l2c[l1i])
		q->l2c[l1i][idx] = v;
	return 0;
}

struct scan_ctx {
	int v2;
	char *zero;	/* a cluster of zeros */
	uint64_t zeros;	/* zero clusters made real */
};

/* Count the mappings; refuse compressed clusters; materialize zeros. */
static int scan_table(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t l2_off,
		      const uint64_t *l2, void *ctx)
{
	struct scan_ctx *c = ctx;
	uint64_t j;
	int r = 0;

	for (j = 0; j < q->l2_entries && !r; j++) {
		uint64_t e = be64toh(l2[j]);

		if (!e)
			continue;
		if (e & Q2_COMPRESSED)
			return refuse(s, "compressed clusters");
		if ((e & Q2_OFFSET_MASK) % q->cs)
			return cow_store_error(s, -EINVAL, "corrupt qcow2 image: unaligned data cluster");
		if (!c->v2 && (e & Q2_ZERO)) {
			if (s->read_only)
				continue;
			r = materialize_zero(s, q, l1i, j, e, c->zero);
			c->zeros++;
		} else if (!(e & Q2_OFFSET_MASK)) {
			continue;
		}
		q->nr_mapped++;
		set_mapped(q, l1i * q->l2_entries + j);
	}
	return r;
}

static int scan_l2(struct cow_store *s, struct q2 *q, int v2)
{
	struct scan_ctx c = { .v2 = v2, .zero = calloc(1, q->cs) };
	int r;

	if (!c.zero)
		return -ENOMEM;
	r = walk_l2(s, q, scan_table, &c);
	if (!r && c.zeros && fdatasync(s->cow_fd) < 0)
		r = -errno;
	free(c.zero);
	return r;
}

static int q2_open(struct cow_store *s)
{
	struct q2_header h;
	struct q2 *q = calloc(1, sizeof(*q));
	char buf[Q2_HEADER_V3];
	int v2, r;

	if (!q)
		return -ENOMEM;
	s->priv = q;
	memset(buf, 0, sizeof(buf));
	r = pread_full(s->cow_fd, buf, s->cow_size < sizeof(buf) ? (size_t)s->cow_size : sizeof(buf), 0);
	if (r) {
		cow_store_error(s, r, "cannot read the qcow2 header: %s", strerror(-r));
		goto fail;
	}
	header_from_disk(buf, sizeof(buf), &h, &v2);
	r = check_header(s, &h);
	if (!r)
		r = check_backing(s, &h);
	if (r)
		goto fail;
	q->version = h.version;
	q->cs = 1ULL << h.cluster_bits;
	q->l2_entries = q->cs / 8;
	q->refs_per_block = q->cs / 2;
	q->l1_size = h.l1_size;
	q->l1_offset = h.l1_table_offset;
	q->rt_offset = h.refcount_table_offset;
	q->rt_clusters = h.refcount_table_clusters;
	q->rt_entries = (uint64_t)h.refcount_table_clusters * q->cs / 8;
	if (div_up(div_up(h.size, q->cs), q->l2_entries) > q->l1_size) {
		r = cow_store_error(s, -EINVAL, "corrupt qcow2 image: its L1 table is too small");
		goto fail;
	}
	q->nchunks = div_up(h.size, q->cs);
	q->size = h.size;
	s->dev_size = h.size;
	q->mapped = calloc(div_up(q->nchunks, 8) + 1, 1);
	if (!q->mapped) {
		r = -ENOMEM;
		goto fail;
	}
	r = read_be64_table(s, q->l1_offset, q->l1_size, &q->l1);
	if (!r)
		r = read_be64_table(s, q->rt_offset, q->rt_entries, &q->rt);
	if (!r) {
		q->l1_new = calloc(q->l1_size ? q->l1_size : 1, 8);
		q->l2c = calloc(q->l1_size ? q->l1_size : 1, sizeof(*q->l2c));
		if (!q->l1_new || !q->l2c)
			r = -ENOMEM;
	}
	if (r) {
		if (!s->error[0])
			cow_store_error(s, r, "cannot read the qcow2 tables: %s", strerror(-r));
		goto fail;
	}
	for (uint64_t i = 0; i < q->rt_entries; i++)
		q->rt[i] &= ~0x1ffULL;	/* bits 0-8 are reserved */
	/* An L1 entry without an offset is unallocated, whatever its flags (as for qemu). */
	for (uint64_t i = 0; i < q->l1_size; i++)
		if (!(q->l1[i] & Q2_OFFSET_MASK))
			q->l1[i] = 0;
	for (uint64_t i = 0; i < div_up(q->nchunks, q->l2_entries); i++)
		q->tables_missing += !q->l1[i];
	r = find_end(s, q);
	q->opened_end = q->next_free;
	if (!r)
		r = scan_l2(s, q, v2);
	q->zero_end = q->next_free;
	if (!r && !s->read_only && h.autoclear_features) {
		/* Bitmaps and the like go stale once we write: say so, as qemu does. */
		uint64_t zero = 0;

		r = pwrite_full(s->cow_fd, &zero, 8, offsetof(struct q2_header, autoclear_features));
		if (!r && fdatasync(s->cow_fd) < 0)
			r = -errno;
	}
	if (r)
		goto fail;
	return 0;
fail:
	q2_close(s);
	return r;
}

/* ---- create ------------------------------------------------------------------ */

static int q2_create(struct cow_store *s)
{
	uint64_t cs = (uint64_t)s->chunk_sectors * COW_SECTOR, clusters, l1_size, l1_clusters;
	uint64_t rt_clusters, refs_per_block = cs / 2, blocks, total, i, name_off;
	size_t name_len = s->base_name ? strlen(s->base_name) : 0;
	struct q2_header h;
	char *meta;
	uint32_t ext[2];
	int r;

	if (cs > (1ULL << Q2_MAX_CLUSTER_BITS))
		return cow_store_error(s, -EINVAL, "qcow2 clusters are at most 2 MiB; use a chunk of 2 MiB or less");
	if (!name_len)
		return cow_store_error(s, -EINVAL, "a qcow2 store needs the base's path");
	/* Header, backing format extension "raw", end marker, backing name. */
	name_off = Q2_HEADER_V3 + 16 + 8;
	if (name_off + name_len > cs)
		return cow_store_error(s, -ENAMETOOLONG, "the base's path does not fit in a %llu-byte cluster",
				       (unsigned long long)cs);
	clusters = div_up(s->base_size, cs);
	l1_size = div_up(clusters, cs / 8);
	l1_clusters = div_up(l1_size * 8, cs);
	/* Enough refcount blocks for a full image, with room for metadata. */
	blocks = div_up(clusters + clusters / 8 + 64 + l1_clusters, refs_per_block);
	rt_clusters = div_up(blocks * 8, cs);
	total = 1 + rt_clusters + 1 + l1_clusters;
	if (total > refs_per_block)
		return cow_store_error(s, -EINVAL, "the base is too large for %llu-byte qcow2 clusters",
				       (unsigned long long)cs);
	meta = calloc(total, cs);
	if (!meta)
		return -ENOMEM;

	memset(&h, 0, sizeof(h));
	h.magic = htobe32(Q2_MAGIC);
	h.version = htobe32(3);
	h.backing_file_offset = htobe64(name_off);
	h.backing_file_size = htobe32((uint32_t)name_len);
	h.cluster_bits = htobe32((uint32_t)__builtin_ctzll(cs));
	h.size = htobe64(s->base_size);
	h.l1_size = htobe32((uint32_t)l1_size);
	h.l1_table_offset = htobe64((2 + rt_clusters) * cs);
	h.refcount_table_offset = htobe64(cs);
	h.refcount_table_clusters = htobe32((uint32_t)rt_clusters);
	h.refcount_order = htobe32(Q2_REFCOUNT_ORDER);
	h.header_length = htobe32(Q2_HEADER_V3);
	memcpy(meta, &h, sizeof(h));
	ext[0] = htobe32(Q2_EXT_BACKING_FORMAT);
	ext[1] = htobe32(3);
	memcpy(meta + Q2_HEADER_V3, ext, 8);
	memcpy(meta + Q2_HEADER_V3 + 8, "raw", 3);
	/* The end-of-extensions marker is the zeros that follow. */
	memcpy(meta + name_off, s->base_name, name_len);
	/* Refcount table -> the one refcount block, which counts every cluster. */
	*(uint64_t *)(meta + cs) = htobe64((1 + rt_clusters) * cs);
	for (i = 0; i < total; i++)
		((uint16_t *)(meta + (1 + rt_clusters) * cs))[i] = htobe16(1);

	if (s->cow_size < total * cs) {
		if (!s->cow_is_file) {
			free(meta);
			return cow_store_error(s, -ENOSPC, "the CoW device is too small for a qcow2 image");
		}
		if (ftruncate(s->cow_fd, (off_t)(total * cs)) < 0) {
			free(meta);
			return cow_store_error(s, -errno, "cannot size the image: %s", strerror(errno));
		}
		s->cow_size = total * cs;
	}
	/* Everything but the header first: a crash leaves no half image. */
	r = pwrite_full(s->cow_fd, meta + cs, (total - 1) * cs, cs);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (!r)
		r = pwrite_full(s->cow_fd, meta, cs, 0);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	free(meta);
	if (r)
		return cow_store_error(s, r, "cannot write the qcow2 image: %s", strerror(-r));
	return 0;
}

/* ---- mapping ---------------------------------------------------------------- */

/* Take the next cluster for L1 entry @l1i's new L2 table (written at commit). */
static int reserve_l2(struct cow_store *s, struct q2 *q, uint64_t l1i)
{
	int r;

	q->next_free += q->cs;
	r = ensure_space(s, q);
	if (r) {
		q->next_free -= q->cs;
		return r;
	}
	q->l1_new[l1i] = q->next_free - q->cs;
	q->tables_missing -= !!q->tables_missing;
	return 0;
}

static int needs_table(const struct q2 *q, uint64_t l1i)
{
	return !q->l1[l1i] && !q->l1_new[l1i];
}

/*
 * Can the store hold @clusters more clusters, with @more clusters granted
 * on top of those granted now?  Room is kept past them for the L2 tables
 * granted clusters may still need, and for every refcount block and table
 * a commit adds for all that: a full store fails here, cleanly, before the
 * kernel copies anything, never in mark() or a commit.
 */
static int room_for(struct cow_store *s, struct q2 *q, uint64_t clusters, uint64_t more)
{
	uint64_t debt = q->granted + more, end;

	if (debt > q->tables_missing)
		debt = q->tables_missing;
	end = q->next_free + q->cs * (clusters + debt);
	return store_grow(s, end + refcount_reserve(q, end) * q->cs);
}

/*
 * The cluster the image keeps @chunk's data in, from its committed L2
 * table (read only for a chunk q->mapped has); *off = 0 when there is
 * none.  (Chunks marked since the last commit
 * are not looked for: the kernel holds their remaps and never faults on
 * them again; reloads turn only committed chunks into segments.)
 */
static int mapped_cluster(struct cow_store *s, struct q2 *q, uint64_t chunk, uint64_t *off)
{
	uint64_t l2_off = q->l1[chunk / q->l2_entries] & Q2_OFFSET_MASK, e;
	int r;

	*off = 0;
	if (!l2_off || !is_mapped(q, chunk))
		return 0;
	if (q->l2c[chunk / q->l2_entries]) {
		e = q->l2c[chunk / q->l2_entries][chunk % q->l2_entries];
	} else {
		r = pread_full(s->cow_fd, &e, sizeof(e), l2_off + chunk % q->l2_entries * sizeof(e));
		if (r)
			return cow_store_error(s, r, "cannot read an L2 table: %s", strerror(-r));
	}
	e = be64toh(e);
	/* open() refused compressed clusters and made zero clusters real. */
	if (e & (Q2_COMPRESSED | Q2_ZERO))
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: chunk %llu changed under us",
				       (unsigned long long)chunk);
	*off = e & Q2_OFFSET_MASK;
	if (*off % q->cs)
		return cow_store_error(s, -EINVAL, "corrupt qcow2 image: unaligned data cluster");
	if (*off > s->cow_size || s->cow_size - *off < q->cs)
		return cow_store_error(s, -EINVAL,
				       "corrupt qcow2 image: chunk %llu lives at byte %llu, past the image's end (see cowctl check)",
				       (unsigned long long)chunk, (unsigned long long)*off);
	return 0;
}

static int q2_locate(struct cow_store *s, uint64_t chunk, uint64_t *sector, int *data_valid)
{
	struct q2 *q = s->priv;
	uint64_t l1i = chunk / q->l2_entries, off;
	int r;

	if (l1i >= q->l1_size || chunk >= q->nchunks)
		return cow_store_error(s, -EINVAL, "chunk %llu is past the image",
				       (unsigned long long)chunk);
	/*
	 * A write can reach a chunk the image maps before cowd has loaded
	 * the mapping into the kernel: its data is in that cluster already.
	 */
	r = mapped_cluster(s, q, chunk, &off);
	if (r)
		return r;
	if (off) {
		*sector = off / COW_SECTOR;
		*data_valid = 1;
		return 0;
	}
	r = room_for(s, q, 1 + needs_table(q, l1i), 0);
	if (r)
		return r;
	/* The table goes before the run of data clusters, not inside it. */
	if (needs_table(q, l1i)) {
		r = reserve_l2(s, q, l1i);
		if (r)
			return r;
	}
	*sector = q->next_free / COW_SECTOR;
	*data_valid = 0;
	q->next_free += q->cs;
	r = ensure_space(s, q);
	if (r)
		q->next_free -= q->cs;
	return r;
}

/*
 * A cluster the kernel holds for @chunk, maybe given out by an earlier
 * daemon: nothing is allocated over it, data or metadata.
 */
static int keep_allocated(struct cow_store *s, struct q2 *q, uint64_t chunk, uint64_t sector)
{
	uint64_t off = sector * COW_SECTOR, mapped;

	if (chunk / q->l2_entries >= q->l1_size || off % q->cs)
		return cow_store_error(s, -EINVAL, "bad mapping: chunk %llu at sector %llu",
				       (unsigned long long)chunk, (unsigned long long)sector);
	/* Every location the kernel holds was given out inside the image. */
	if (off > s->cow_size || s->cow_size - off < q->cs)
		return cow_store_error(s, -EINVAL,
				       "bad mapping: chunk %llu at sector %llu, past the image's end",
				       (unsigned long long)chunk, (unsigned long long)sector);
	/*
	 * Open made zero clusters real in [opened_end, zero_end): if an
	 * earlier daemon's copy fills one of those for another chunk, both
	 * claim it.  Only a change to the image while it was in use can
	 * cause that.  (The chunk's own zero cluster is reported, with its
	 * data valid, when a write reached it before cowd loaded it.)
	 */
	if (off >= q->opened_end && off < q->zero_end &&
	    (mapped_cluster(s, q, chunk, &mapped) || mapped != off))
		return cow_store_error(s, -EEXIST,
				       "chunk %llu is being copied to byte %llu, which this daemon took for a zero cluster at open: the image changed while in use; stop and run cowctl check",
				       (unsigned long long)chunk, (unsigned long long)off);
	if (off + q->cs > q->next_free)
		q->next_free = off + q->cs;
	return 0;
}

static int q2_hold(struct cow_store *s, uint64_t chunk, uint64_t sector)
{
	return keep_allocated(s, s->priv, chunk, sector);
}

/* A granted cluster at byte @off was used: its run has one fewer left. */
static void grant_taken(struct q2 *q, uint64_t off)
{
	size_t i;

	for (i = 0; i < q->ngrants; i++) {
		struct q2_grant *g = &q->grants[i];

		if (off < g->first || off >= g->first + g->n * q->cs)
			continue;
		q->granted--;
		if (!--g->left)
			q->grants[i] = q->grants[--q->ngrants];
		return;
	}
}

static int q2_mark(struct cow_store *s, uint64_t chunk, uint64_t sector)
{
	struct q2 *q = s->priv;
	uint64_t off = sector * COW_SECTOR, l1i = chunk / q->l2_entries;
	int r;

	r = keep_allocated(s, q, chunk, sector);
	if (r)
		return r;
	/*
	 * A granted cluster (or an earlier daemon's) may be the first of its
	 * L2 table: take the table now, from the room kept for it.
	 */
	if (needs_table(q, l1i)) {
		r = reserve_l2(s, q, l1i);
		if (r)
			return r;
	}
	grant_taken(q, off);
	if (array_reserve(&q->pending, &q->maxpending, q->npending, sizeof(*q->pending)))
		return -ENOMEM;
	q->pending[q->npending] = (struct q2_pending){ chunk, off, q->npending };
	q->npending++;
	return 0;
}

/*
 * Up to @max fresh clusters at the end of the image, for chunks not known
 * yet.  Room is kept for the L2 tables they may need and, out of grants,
 * for a sixteenth more and a locate() (a fault raised before the kernel
 * had grants).  Never more than the chunks that have no cluster yet.
 */
static int q2_grant(struct cow_store *s, uint64_t max, uint64_t *sector, uint64_t *count)
{
	struct q2 *q = s->priv;
	uint64_t busy = q->nr_mapped + q->npending + q->granted, n;

	if (busy < q->nchunks && max > q->nchunks - busy)
		max = q->nchunks - busy;
	if (busy >= q->nchunks || !max)
		return cow_store_error(s, -ENOSPC, "every chunk has a cluster or a grant");
	for (n = max; n; n /= 2)
		if (!room_for(s, q, n + n / 16 + 2, n))
			break;
	if (!n)
		return -ENOSPC;	/* room_for() said why */
	if (array_reserve(&q->grants, &q->maxgrants, q->ngrants, sizeof(*q->grants)))
		return -ENOMEM;
	q->grants[q->ngrants++] = (struct q2_grant){ q->next_free, n, n };
	q->granted += n;
	*sector = q->next_free / COW_SECTOR;
	*count = n;
	q->next_free += n * q->cs;
	return 0;
}

static void q2_ungrant(struct cow_store *s, uint64_t sector, uint64_t count)
{
	struct q2 *q = s->priv;
	uint64_t off = sector * COW_SECTOR;
	size_t i;

	for (i = 0; i < q->ngrants; i++) {
		struct q2_grant *g = &q->grants[i];

		if (g->first != off || g->n != count)
			continue;
		q->granted -= g->left;
		if (q->next_free == off + count * q->cs && g->left == count)
			q->next_free = off;
		q->grants[i] = q->grants[--q->ngrants];
		return;
	}
}

static int sync_step(struct cow_store *s, const char *what)
{
	if (fdatasync(s->cow_fd) < 0)
		return cow_store_error(s, -errno, "cannot sync the %s: %s", what, strerror(errno));
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* By chunk, and in the order marked: the last mapping of a chunk wins. */
static int cmp_pending(const void *a, const void *b)
{
	const struct q2_pending *x = a, *y = b;

	if (x->chunk != y->chunk)
		return x->chunk < y->chunk ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Step 1 of a commit: refcount 1 for @n clusters, a write per run. */
static int count_clusters(struct cow_store *s, struct q2 *q, uint64_t *clusters, size_t n)
{
	size_t i, j;
	int r = 0;

	qsort(clusters, n, sizeof(*clusters), cmp_u64);
	for (i = 0; i < n && !r; i = j) {
		for (j = i + 1; j < n && clusters[j] <= clusters[j - 1] + 1; j++)
			;
		r = set_refcounts(s, q, clusters[i], clusters[j - 1] - clusters[i] + 1, 1);
	}
	return r;
}

/*
 * Step 2: the L2 entries of the pending mappings, one write per table (the
 * span from its first to its last new entry; the entries between as they
 * are, from the cache, or read, or zero in a new table).
 */
static int write_l2_entries(struct cow_store *s, struct q2 *q)
{
	uint64_t *buf = malloc(q->cs), l1i, lo, hi, k;
	const uint64_t *table;
	size_t i, j;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	qsort(q->pending, q->npending, sizeof(*q->pending), cmp_pending);
	for (i = 0; i < q->npending && !r; i = j) {
		l1i = q->pending[i].chunk / q->l2_entries;
		for (j = i; j < q->npending && q->pending[j].chunk / q->l2_entries == l1i; j++)
			;
		lo = q->pending[i].chunk % q->l2_entries;
		hi = q->pending[j - 1].chunk % q->l2_entries;
		/* The table as it is (read into buf, or cached: copied there). */
		if (q->l1[l1i]) {
			r = load_l2(s, q, l1i, buf, &table);
			if (r)
				break;
			if (table != buf)
				memcpy(buf + lo, table + lo, (hi - lo + 1) * 8);
		} else {
			memset(buf + lo, 0, (hi - lo + 1) * 8);
		}
		/* In marking order: the last mapping of a chunk wins. */
		for (k = i; k < j; k++)
			buf[q->pending[k].chunk % q->l2_entries] = htobe64(q->pending[k].offset | Q2_COPIED);
		r = pwrite_full(s->cow_fd, buf + lo, (hi - lo + 1) * 8,
				(q->l1[l1i] ? q->l1[l1i] & Q2_OFFSET_MASK : q->l1_new[l1i]) + lo * 8);
		if (r)
			cow_store_error(s, r, "cannot write an L2 table: %s", strerror(-r));
	}
	free(buf);
	return r;
}

/* Step 3: the L1 entries of the @nl1 new L2 tables, a write per run of them. */
static int write_l1_entries(struct cow_store *s, struct q2 *q, size_t nl1)
{
	uint64_t *run = malloc(nl1 * sizeof(*run));
	size_t i, j, k;
	int r = 0;

	if (!run)
		return -ENOMEM;
	for (i = 0; i < q->l1_size && !r; i = j) {
		for (j = i; j < q->l1_size && q->l1_new[j]; j++)
			run[j - i] = htobe64(q->l1_new[j] | Q2_COPIED);
		if (j == i) {
			j++;
			continue;
		}
		r = pwrite_full(s->cow_fd, run, (j - i) * 8, q->l1_offset + i * 8);
		if (r) {
			cow_store_error(s, r, "cannot write the L1 table: %s", strerror(-r));
			break;
		}
		for (k = i; k < j; k++) {
			q->l1[k] = q->l1_new[k] | Q2_COPIED;
			q->l1_new[k] = 0;
		}
	}
	free(run);
	return r;
}

/* The commit is durable: the cached tables say what the image does. */
static void cache_committed(struct q2 *q)
{
	size_t i;

	for (i = 0; i < q->npending; i++) {
		const struct q2_pending *p = &q->pending[i];
		uint64_t *t = q->l2c[p->chunk / q->l2_entries];

		if (t)
			t[p->chunk % q->l2_entries] = htobe64(p->offset | Q2_COPIED);
	}
}

static int q2_commit(struct cow_store *s)
{
	struct q2 *q = s->priv;
	uint64_t *clusters = NULL;
	char *zero = NULL;
	size_t i, nl1 = 0, n = 0;
	int r = 0;

	if (!q->npending)
		return 0;
	/* 1. Refcounts of the data clusters and of new, zeroed L2 tables (mark() took them). */
	for (i = 0; i < q->l1_size; i++)
		nl1 += !!q->l1_new[i];
	clusters = malloc((q->npending + nl1) * sizeof(*clusters));
	if (!r && (!clusters || (nl1 && !(zero = calloc(1, q->cs)))))
		r = -ENOMEM;
	for (i = 0; i < q->l1_size && !r; i++) {
		if (!q->l1_new[i])
			continue;
		r = pwrite_full(s->cow_fd, zero, q->cs, q->l1_new[i]);
		clusters[n++] = q->l1_new[i] / q->cs;
	}
	for (i = 0; i < q->npending && !r; i++)
		clusters[n++] = q->pending[i].offset / q->cs;
	if (!r)
		r = count_clusters(s, q, clusters, n);
	free(clusters);
	free(zero);
	if (r)
		return s->error[0] ? r : cow_store_error(s, r, "cannot allocate clusters: %s", strerror(-r));
	r = sync_step(s, "refcounts");
	/* 2. The L2 entries. */
	if (!r)
		r = write_l2_entries(s, q);
	if (!r)
		r = sync_step(s, "L2 tables");
	/* 3. The L1 entries of new L2 tables. */
	if (!r && nl1)
		r = write_l1_entries(s, q, nl1);
	if (!r)
		r = sync_step(s, "L1 table");
	if (!r) {
		cache_committed(q);
		for (i = 0; i < q->npending; i++)
			set_mapped(q, q->pending[i].chunk);
		q->nr_mapped += q->npending;
		q->npending = 0;
	}
	return r;
}

struct mapping_ctx {
	cow_mapping_fn fn;
	void *ctx;
};

static int table_mappings(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t l2_off,
			  const uint64_t *l2, void *ctx)
{
	struct mapping_ctx *m = ctx;
	uint64_t j;
	int r = 0;

	for (j = 0; j < q->l2_entries && !r; j++) {
		uint64_t e = be64toh(l2[j]), off = e & Q2_OFFSET_MASK;

		if (!off || (e & Q2_COMPRESSED) || (q->version == 3 && (e & Q2_ZERO)))
			continue;
		r = m->fn(m->ctx, l1i * q->l2_entries + j, off / COW_SECTOR);
	}
	return r;
}

struct extent_ctx {
	cow_extent_fn fn;
	void *ctx;
	uint64_t base_sectors;
};

/* Data clusters and, in version 3, zero clusters (which may have an offset too). */
static int table_extents(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t l2_off,
			 const uint64_t *l2, void *ctx)
{
	struct extent_ctx *x = ctx;
	uint64_t j, cs = q->cs / COW_SECTOR;
	int r = 0;

	for (j = 0; j < q->l2_entries && !r; j++) {
		uint64_t e = be64toh(l2[j]), off = e & Q2_OFFSET_MASK;
		uint64_t first = (l1i * q->l2_entries + j) * cs, n = cs;

		if (first >= x->base_sectors)
			break;
		if (n > x->base_sectors - first)
			n = x->base_sectors - first;
		if (e & Q2_COMPRESSED)
			return refuse(s, "compressed clusters");
		if (q->version == 3 && (e & Q2_ZERO))
			r = x->fn(x->ctx, first, n, COW_EXTENT_ZERO);
		else if (off)
			r = x->fn(x->ctx, first, n, off / COW_SECTOR);
	}
	return r;
}

static int q2_for_each_extent(struct cow_store *s, cow_extent_fn fn, void *ctx)
{
	struct extent_ctx x = { fn, ctx, div_up(((struct q2 *)s->priv)->size, COW_SECTOR) };

	return walk_l2(s, s->priv, table_extents, &x);
}

static int q2_for_each_mapping(struct cow_store *s, cow_mapping_fn fn, void *ctx)
{
	struct mapping_ctx m = { fn, ctx };

	return walk_l2(s, s->priv, table_mappings, &m);
}

static uint64_t q2_data_phase(struct cow_store *s)
{
	return 0; /* clusters are chunk-sized and cluster aligned */
}

static uint64_t q2_used_bytes(struct cow_store *s)
{
	struct q2 *q = s->priv;

	return q->next_free;
}

/* ---- grow ------------------------------------------------------------------- */

/* The L1 table for @l1_size entries at @off, from the committed one. */
static int write_l1_copy(struct cow_store *s, struct q2 *q, uint64_t off, uint64_t l1_size)
{
	uint64_t n = div_up(l1_size * 8, q->cs), *t = calloc(n, q->cs), i;
	int r;

	if (!t)
		return -ENOMEM;
	for (i = 0; i < q->l1_size; i++)
		t[i] = htobe64(q->l1[i]);
	r = pwrite_full(s->cow_fd, t, n * q->cs, off);
	free(t);
	return r;
}

/*
 * The cluster of the base's partial last chunk holds, past the base's end,
 * whatever was there when it was filled (an older kernel module filled
 * only the base's part): once the device grows that reads as zeros.
 */
static int zero_last_tail(struct cow_store *s, struct q2 *q)
{
	uint64_t tail = s->base_size % q->cs, off;
	char *zero;
	int r;

	if (!tail || q->size != s->base_size)
		return 0;
	r = mapped_cluster(s, q, s->base_size / q->cs, &off);
	if (r || !off)
		return r;
	zero = calloc(1, q->cs - tail);
	if (!zero)
		return -ENOMEM;
	r = pwrite_full(s->cow_fd, zero, q->cs - tail, off + tail);
	free(zero);
	return r;
}

/*
 * Grow the virtual size to @size, as qemu-img resize does.  The L1 table
 * grows in place while its clusters have room (they are whole and
 * zero-filled); else a copy of it with room goes at the end of the image,
 * durable and counted before one header write (size, L1 size and offset
 * share a sector) switches to it, and the old one's clusters are freed
 * after.  A power cut leaves the old size or the new, and leaks at most.
 */
static int q2_grow(struct cow_store *s, uint64_t size)
{
	struct q2 *q = s->priv;
	uint64_t nchunks, l1_size, missing = 0, kept = q->tables_missing;
	uint64_t old_clusters = div_up((uint64_t)q->l1_size * 8, q->cs), l1_off = q->l1_offset;
	uint64_t *l1 = NULL, *l1_new = NULL, **l2c = NULL, n, i;
	uint8_t *mapped = NULL;
	int moved = 0, r = 0;
	char header[24];
	uint32_t v32;
	uint64_t v64;

	if (size <= q->size)
		return 0;
	if (q->npending)
		return cow_store_error(s, -EBUSY, "grow() with marks not committed");
	if (size > q2_max_size(__builtin_ctzll(q->cs)))
		return cow_store_error(s, -EFBIG, "%llu bytes need an L1 table over qemu's limit of %llu MiB",
				       (unsigned long long)size, Q2_MAX_L1_BYTES >> 20);
	nchunks = div_up(size, q->cs);
	l1_size = div_up(nchunks, q->l2_entries);
	if (l1_size < q->l1_size)
		l1_size = q->l1_size;
	l1 = calloc(l1_size, 8);
	l1_new = calloc(l1_size, 8);
	l2c = calloc(l1_size, sizeof(*l2c));
	mapped = calloc(div_up(nchunks, 8) + 1, 1);
	if (!l1 || !l1_new || !l2c || !mapped) {
		r = -ENOMEM;
		goto out;
	}
	/*
	 * The new L1 entries have no tables: granted clusters may need them
	 * (room_for() keeps room for min(granted, tables_missing)).
	 */
	for (i = 0; i < div_up(nchunks, q->l2_entries); i++)
		missing += i >= q->l1_size || needs_table(q, i);
	q->tables_missing = missing;
	moved = l1_size > q->l1_size && l1_size > old_clusters * q->cs / 8;
	n = moved ? div_up(l1_size * 8, q->cs) : 0;
	r = room_for(s, q, n, 0);
	q->tables_missing = kept;
	if (r)
		goto out;
	if (moved) {
		/* A new table at the end, counted before anything points at it. */
		l1_off = q->next_free;
		q->next_free += n * q->cs;
		r = ensure_space(s, q);
		if (!r)
			r = write_l1_copy(s, q, l1_off, l1_size);
		if (!r)
			r = set_refcounts(s, q, l1_off / q->cs, n, 1);
	} else if (l1_size > q->l1_size) {
		/* Qemu zero-fills the table's clusters; make sure of it. */
		r = pwrite_full(s->cow_fd, l1_new, (l1_size - q->l1_size) * 8,
				q->l1_offset + (uint64_t)q->l1_size * 8);
	}
	if (!r)
		r = zero_last_tail(s, q);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		if (!s->error[0])
			cow_store_error(s, r, "cannot write a larger L1 table: %s", strerror(-r));
		goto out;
	}
	v64 = htobe64(size);
	memcpy(header, &v64, 8);
	memset(header + 8, 0, 4);	/* crypt_method: open() refused anything else */
	v32 = htobe32((uint32_t)l1_size);
	memcpy(header + 12, &v32, 4);
	v64 = htobe64(l1_off);
	memcpy(header + 16, &v64, 8);
	r = pwrite_full(s->cow_fd, header, sizeof(header), offsetof(struct q2_header, size));
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r) {
		cow_store_error(s, r, "cannot write the grown size to the header: %s", strerror(-r));
		goto out;
	}
	memcpy(l1, q->l1, (size_t)q->l1_size * 8);
	memcpy(l1_new, q->l1_new, (size_t)q->l1_size * 8);
	memcpy(l2c, q->l2c, (size_t)q->l1_size * sizeof(*l2c));
	memcpy(mapped, q->mapped, div_up(q->nchunks, 8));
	free(q->l1);
	free(q->l1_new);
	free(q->l2c);
	free(q->mapped);
	q->l1 = l1;
	q->l1_new = l1_new;
	q->l2c = l2c;
	q->mapped = mapped;
	l1 = l1_new = NULL;
	l2c = NULL;
	mapped = NULL;
	/* The old table is garbage now: a failure to free it only leaks it. */
	if (moved && old_clusters && set_refcounts(s, q, q->l1_offset / q->cs, old_clusters, 0))
		s->error[0] = 0;
	q->l1_offset = l1_off;
	q->l1_size = (uint32_t)l1_size;
	q->nchunks = nchunks;
	q->size = size;
	s->dev_size = size;
	q->tables_missing = missing;
out:
	free(l1);
	free(l1_new);
	free(l2c);
	free(mapped);
	return r;
}

/* ---- check ------------------------------------------------------------------ */

struct q2_check {
	uint16_t *want;		/* refcount each cluster should have */
	uint16_t *have;		/* refcount each cluster has */
	uint64_t n;
	uint64_t outside;	/* references past the end of the image */
	uint64_t bad_copied, first_bad;
};

/* Count a reference to the cluster at @off; check its copied flag. */
static void count_ref(struct q2_check *c, uint64_t off, uint64_t cs, int copied_flag)
{
	uint64_t i = off / cs;

	if (i >= c->n) {
		c->outside++;
		return;
	}
	c->want[i]++;
	if (copied_flag >= 0 && (c->have[i] == 1) != copied_flag && !c->bad_copied++)
		c->first_bad = off;
}

/* The refcounts on disk of clusters 0..c->n-1, a refcount block at a time. */
static int read_refcounts(struct cow_store *s, struct q2 *q, struct q2_check *c)
{
	uint16_t *block = malloc(q->cs);
	uint64_t b, i;
	int r = 0;

	if (!block)
		return -ENOMEM;
	for (b = 0; b * q->refs_per_block < c->n && b < q->rt_entries && !r; b++) {
		if (!q->rt[b])
			continue;
		r = pread_full(s->cow_fd, block, q->cs, q->rt[b]);
		for (i = 0; i < q->refs_per_block && b * q->refs_per_block + i < c->n; i++)
			c->have[b * q->refs_per_block + i] = be16toh(block[i]);
	}
	free(block);
	return r;
}

static int table_refs(struct cow_store *s, struct q2 *q, uint64_t l1i, uint64_t l2_off,
		      const uint64_t *l2, void *ctx)
{
	uint64_t j;

	count_ref(ctx, l2_off, q->cs, !!(q->l1[l1i] & Q2_COPIED));
	for (j = 0; j < q->l2_entries; j++) {
		uint64_t e = be64toh(l2[j]), off = e & Q2_OFFSET_MASK;

		if (off && !(e & Q2_COMPRESSED))
			count_ref(ctx, off, q->cs, !!(e & Q2_COPIED));
	}
	return 0;
}

/*
 * Rebuild the refcounts from the metadata, as qemu-img check does, into
 * @c (want: from the metadata; have: on disk).  0, or -EINVAL with
 * s->error for what is corrupt beyond counts: wrong copied flags,
 * references past the end.
 */
static int q2_count_refs(struct cow_store *s, struct q2 *q, struct q2_check *c)
{
	uint64_t i;
	int r;

	c->n = div_up(s->cow_size > q->next_free ? s->cow_size : q->next_free, q->cs);
	c->want = calloc(c->n ? c->n : 1, sizeof(*c->want));
	c->have = calloc(c->n ? c->n : 1, sizeof(*c->have));
	r = c->want && c->have ? read_refcounts(s, q, c) : -ENOMEM;
	if (!r) {
		count_ref(c, 0, q->cs, -1);
		for (i = 0; i < q->rt_clusters; i++)
			count_ref(c, q->rt_offset + i * q->cs, q->cs, -1);
		for (i = 0; i < div_up((uint64_t)q->l1_size * 8, q->cs); i++)
			count_ref(c, q->l1_offset + i * q->cs, q->cs, -1);
		for (i = 0; i < q->rt_entries; i++)
			if (q->rt[i])
				count_ref(c, q->rt[i], q->cs, -1);
		r = walk_l2(s, q, table_refs, c);
	}
	if (!r && c->bad_copied)
		r = cow_store_error(s, -EINVAL, "corrupt qcow2 image: %llu entries with a wrong copied flag (first at %llu)",
				    (unsigned long long)c->bad_copied, (unsigned long long)c->first_bad);
	if (!r && c->outside)
		r = cow_store_error(s, -EINVAL, "corrupt qcow2 image: %llu references past its end",
				    (unsigned long long)c->outside);
	for (i = 0; i < c->n && !r; i++)
		if (c->have[i] < c->want[i])
			r = cow_store_error(s, -EINVAL, "corrupt qcow2 image: cluster %llu is used %u times but counted %u",
					    (unsigned long long)i, c->want[i], c->have[i]);
	return r;
}

/*
 * A cluster used more than counted is corruption, one counted more than
 * used is a leak.  OFLAG_COPIED must match a refcount of 1.
 */
static int q2_check(struct cow_store *s)
{
	struct q2_check c = { 0 };
	uint64_t i, leaks = 0;
	int r;

	r = q2_count_refs(s, s->priv, &c);
	for (i = 0; i < c.n && !r; i++)
		leaks += c.have[i] > c.want[i];
	free(c.want);
	free(c.have);
	if (r)
		return r;
	if (leaks) {
		cow_store_error(s, 0, "%llu leaked clusters (counted, unused: space lost, no data harmed)",
				(unsigned long long)leaks);
		return 1;
	}
	return 0;
}

/*
 * Free the leaked clusters that nothing uses (as qemu-img check -r leaks):
 * their refcounts go to 0 and, in a file, their space back to the
 * filesystem.  A cluster counted twice but used once (only a crafted
 * image has one: we never share clusters) keeps its count: lowering it
 * would make its copied flag wrong.
 */
static int q2_repair(struct cow_store *s)
{
	struct q2 *q = s->priv;
	struct q2_check c = { 0 };
	uint64_t i, freed = 0, kept = 0;
	int r;

	r = q2_count_refs(s, q, &c);
	for (i = 0; i < c.n && !r; i++) {
		if (c.have[i] <= c.want[i])
			continue;
		if (c.want[i]) {
			kept++;
			continue;
		}
		r = set_refcounts(s, q, i, 1, 0);
		if (!r && s->cow_is_file)
			fallocate(s->cow_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)(i * q->cs), (off_t)q->cs);
		freed += !r;
	}
	free(c.want);
	free(c.have);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = cow_store_error(s, -errno, "cannot sync the refcounts: %s", strerror(errno));
	if (r)
		return r;
	cow_store_error(s, 0, "%llu leaked clusters freed%s", (unsigned long long)freed,
			kept ? "; clusters counted more than once but used once are kept" : "");
	return 0;
}

/*
 * Clusters that nothing uses and nothing counts: granted, held or grown in
 * advance and not used.  From the metadata and the refcounts both, so that
 * a cluster one of them claims is never reported.
 */
static int q2_for_each_unused(struct cow_store *s, cow_range_fn fn, void *ctx)
{
	struct q2 *q = s->priv;
	struct q2_check c = { 0 };
	uint64_t i, first, spc = q->cs / COW_SECTOR;
	int r;

	r = q2_count_refs(s, q, &c);
	for (i = 0; i < c.n && !r;) {
		if (c.want[i] || c.have[i]) {
			i++;
			continue;
		}
		for (first = i; i < c.n && !c.want[i] && !c.have[i];)
			i++;
		r = fn(ctx, first * spc, (i - first) * spc);
	}
	free(c.want);
	free(c.have);
	return r;
}

static const struct cow_plugin qcow2_plugin = {
	.api_version = COW_PLUGIN_API_VERSION,
	.size = sizeof(struct cow_plugin),
	.name = "qcow2",
	.description = "qcow2 v3 image with the base as its raw backing file",
	.probe = q2_probe,
	.create = q2_create,
	.open = q2_open,
	.close = q2_close,
	.locate = q2_locate,
	.mark = q2_mark,
	.commit = q2_commit,
	.for_each_mapping = q2_for_each_mapping,
	.data_phase = q2_data_phase,
	.used_bytes = q2_used_bytes,
	.inspect = q2_inspect,
	.check = q2_check,
	.repair = q2_repair,
	.hold = q2_hold,
	.for_each_extent = q2_for_each_extent,
	.grant = q2_grant,
	.ungrant = q2_ungrant,
	.for_each_unused = q2_for_each_unused,
	.grow = q2_grow,
};

COW_PLUGIN_REGISTER(qcow2_plugin)
