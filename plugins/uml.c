// SPDX-License-Identifier: GPL-2.0-only
/*
 * The User-Mode Linux COW format, version 3, as arch/um/drivers/cow_user.c
 * writes it:
 *
 *   offset 0                 header (big-endian, packed, 4128 bytes)
 *   ROUND_UP(4128, align)    bitmap: bit N (byte N/8, bit N%8, LSB first)
 *                            set = 512-byte sector N of the device lives
 *                            in this file
 *   ROUND_UP(bitmap end, align)  data: sector N at data_offset + N * 512
 *
 * The CoW location of every chunk is fixed, so the only decision is "set
 * these bits and commit".  dm-cow works in whole chunks: a chunk UML left
 * partly written is completed from the base when the store is opened.
 */
#include <errno.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cow-plugin.h"
#include "cow-store.h"

#define UML_MAGIC 0x4f4f4f4dU /* "MOOO" */
#define UML_VERSION 3
#define UML_PATH_LEN 4096
#define UML_DEFAULT_ALIGN 4096
#define UML_BITMAP_BLOCK 4096 /* unit of bitmap read-modify-write */

struct uml_header {
	uint32_t magic;
	uint32_t version;
	uint32_t mtime;
	uint64_t size;
	uint32_t sectorsize;
	uint32_t alignment;
	uint32_t cow_format;
	char backing_file[UML_PATH_LEN];
} __attribute__((packed));

_Static_assert(sizeof(struct uml_header) == 4128, "UML COW v3 header size");

struct uml_store {
	uint64_t size;		/* backing size, bytes */
	uint64_t sectors;	/* size / 512, rounded up */
	uint64_t bitmap_off;
	uint64_t bitmap_len;
	uint64_t data_off;
	uint64_t nr_chunks;
	uint64_t nr_mapped;
	uint8_t *chunk_map;	/* one bit per chunk: all its sectors are here */
	uint64_t *marked;	/* chunks marked since the last commit */
	size_t nr_marked, max_marked;
};

static uint64_t round_up(uint64_t x, uint64_t align)
{
	return (x + align - 1) / align * align;
}

static void layout(struct uml_store *u, uint64_t size, uint32_t align)
{
	u->size = size;
	u->sectors = (size + COW_SECTOR - 1) / COW_SECTOR;
	u->bitmap_off = round_up(sizeof(struct uml_header), align);
	u->bitmap_len = (u->sectors + 7) / 8;
	u->data_off = round_up(u->bitmap_off + u->bitmap_len, align);
}

static int test_bit64(const uint8_t *map, uint64_t n)
{
	return (map[n / 8] >> (n % 8)) & 1;
}

static void set_bit64(uint8_t *map, uint64_t n)
{
	map[n / 8] |= (uint8_t)(1U << (n % 8));
}

static int uml_probe(const void *head, size_t len)
{
	const struct uml_header *h = head;

	return len >= 8 && be32toh(h->magic) == UML_MAGIC;
}

/* Make sure the store can hold the data area; files grow, devices not. */
static int ensure_size(struct cow_store *s, uint64_t need)
{
	if (s->cow_size >= need)
		return 0;
	if (s->cow_is_file && s->read_only) {
		s->cow_size = need;	/* a sparse tail reads as zeros */
		return 0;
	}
	if (!s->cow_is_file)
		return cow_store_error(s, -ENOSPC,
				       "CoW device too small for the UML format: %llu bytes, need %llu",
				       (unsigned long long)s->cow_size,
				       (unsigned long long)need);
	if (ftruncate(s->cow_fd, (off_t)need) < 0)
		return cow_store_error(s, -errno, "cannot extend the COW file to %llu bytes: %s",
				       (unsigned long long)need, strerror(errno));
	s->cow_size = need;
	return 0;
}

static int uml_create(struct cow_store *s)
{
	struct uml_header *h;
	struct uml_store lay;
	struct stat st;
	uint64_t off;
	char *zero;
	int r;

	if (strlen(s->base_name) >= UML_PATH_LEN)
		return cow_store_error(s, -ENAMETOOLONG, "base file name too long for a UML COW header");
	layout(&lay, s->base_size, UML_DEFAULT_ALIGN);
	r = ensure_size(s, lay.data_off + lay.size);
	if (r)
		return r;

	h = calloc(1, sizeof(*h));
	zero = calloc(1, 1 << 20);
	if (!h || !zero) {
		free(h);
		free(zero);
		return -ENOMEM;
	}
	h->magic = htobe32(UML_MAGIC);
	h->version = htobe32(UML_VERSION);
	h->mtime = htobe32(stat(s->base_name, &st) == 0 ? (uint32_t)st.st_mtime : 0);
	h->size = htobe64(s->base_size);
	h->sectorsize = htobe32(COW_SECTOR);
	h->alignment = htobe32(UML_DEFAULT_ALIGN);
	h->cow_format = 0;
	strcpy(h->backing_file, s->base_name);

	/*
	 * Zero everything up to the data, durably, and only then write the
	 * header: the bitmap must be empty by the time the device is a store
	 * (old bytes there would read as mapped chunks after a power cut).
	 */
	for (off = 0; off < lay.data_off && !r; off += 1 << 20) {
		uint64_t n = lay.data_off - off;

		r = pwrite_full(s->cow_fd, zero, n < (1 << 20) ? n : 1 << 20, off);
	}
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (!r)
		r = pwrite_full(s->cow_fd, h, sizeof(*h), 0);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	free(h);
	free(zero);
	if (r)
		return cow_store_error(s, r, "cannot write the UML COW header: %s", strerror(-r));
	return 0;
}

/*
 * As UML does: a base file modified after the COW file was made is not
 * the base it was made over.  A block device's node says nothing of its
 * content (devtmpfs makes it anew at each boot), so only files are
 * checked.
 */
static int check_mtime(struct cow_store *s, uint32_t mtime)
{
	struct stat st;

	if (s->ignore_base_mtime || !s->base_name || stat(s->base_name, &st) || !S_ISREG(st.st_mode))
		return 0;
	if ((uint32_t)st.st_mtime == mtime)
		return 0;
	return cow_store_error(s, -EINVAL,
			       "the base was modified after the COW file was made (mtime %u, the file says %u), as UML refuses too; if its content is unchanged (a copy that lost its mtime), give --ignore-base-mtime",
			       (uint32_t)st.st_mtime, mtime);
}

static int read_header(struct cow_store *s, struct uml_store *u)
{
	struct uml_header h;
	uint32_t version, sectorsize, align;
	int r;

	r = pread_full(s->cow_fd, &h, sizeof(h), 0);
	if (r)
		return cow_store_error(s, r, "cannot read the UML COW header: %s", strerror(-r));
	if (be32toh(h.magic) != UML_MAGIC)
		return cow_store_error(s, -EINVAL, "not a UML COW file (bad magic)");
	version = be32toh(h.version);
	if (version != UML_VERSION)
		return cow_store_error(s, -EINVAL, "UML COW version %u is not supported (only 3)", version);
	if (h.backing_file[0] == 0 && h.backing_file[1] == 0 &&
	    h.backing_file[2] == 0 && h.backing_file[3] == 0)
		return cow_store_error(s, -EINVAL, "UML COW file with the broken 64-bit v3 layout; convert it with uml_moo first");
	if (be32toh(h.cow_format) != 0)
		return cow_store_error(s, -EINVAL, "UML COW format %u is not supported (only the bitmap format 0)",
				       be32toh(h.cow_format));
	sectorsize = be32toh(h.sectorsize);
	if (sectorsize != COW_SECTOR)
		return cow_store_error(s, -EINVAL, "UML COW sector size %u is not supported (only 512)", sectorsize);
	align = be32toh(h.alignment);
	if (align == 0 || align % COW_SECTOR)
		return cow_store_error(s, -EINVAL, "UML COW alignment %u is not a multiple of 512", align);
	if (be64toh(h.size) != s->base_size)
		return cow_store_error(s, -EINVAL,
				       "UML COW header says the backing file has %llu bytes, but the base has %llu",
				       (unsigned long long)be64toh(h.size),
				       (unsigned long long)s->base_size);
	r = check_mtime(s, be32toh(h.mtime));
	if (r)
		return r;
	layout(u, s->base_size, align);
	return 0;
}

/*
 * Copy the base's sectors a partly written chunk lacks, so the whole chunk
 * lives in the COW file.  Sets their bits in @window (the chunk's bytes).
 */
static int complete_chunk(struct cow_store *s, struct uml_store *u,
			  uint64_t chunk, uint8_t *window, uint64_t first_sector)
{
	uint64_t sector, end = (chunk + 1) * s->chunk_sectors;
	char buf[COW_SECTOR];
	int r;

	if (end > u->sectors)
		end = u->sectors;
	for (sector = chunk * s->chunk_sectors; sector < end; sector++) {
		if (test_bit64(window, sector - first_sector))
			continue;
		memset(buf, 0, sizeof(buf));
		/* The last sector of a base whose size is not a multiple of 512. */
		r = pread_full(s->base_fd, buf,
			       sector * COW_SECTOR + COW_SECTOR > u->size ?
				       u->size - sector * COW_SECTOR : COW_SECTOR,
			       sector * COW_SECTOR);
		if (!r)
			r = pwrite_full(s->cow_fd, buf, COW_SECTOR,
					u->data_off + sector * COW_SECTOR);
		if (r)
			return cow_store_error(s, r, "cannot complete chunk %llu: %s",
					       (unsigned long long)chunk, strerror(-r));
		set_bit64(window, sector - first_sector);
	}
	return 0;
}

/* Load the chunk map from the bitmap, completing partly written chunks. */
static int scan_bitmap(struct cow_store *s, struct uml_store *u)
{
	const uint64_t chunk_bytes = s->chunk_sectors / 8; /* bitmap bytes per chunk */
	const uint64_t most = (1 << 20) / chunk_bytes + 1;
	const uint64_t window_chunks = u->nr_chunks && u->nr_chunks < most ? u->nr_chunks : most;
	uint8_t *window = malloc(window_chunks * chunk_bytes);
	uint64_t chunk;
	int r = 0;

	if (!window)
		return -ENOMEM;
	for (chunk = 0; chunk < u->nr_chunks && !r; chunk += window_chunks) {
		uint64_t n = u->nr_chunks - chunk < window_chunks ? u->nr_chunks - chunk : window_chunks;
		uint64_t off = chunk * chunk_bytes;
		uint64_t len = n * chunk_bytes;
		uint64_t first_sector = chunk * s->chunk_sectors;
		uint64_t c;
		int changed = 0;

		if (off + len > u->bitmap_len)
			len = u->bitmap_len - off;
		memset(window, 0, n * chunk_bytes);
		r = pread_full(s->cow_fd, window, len, u->bitmap_off + off);
		if (r) {
			cow_store_error(s, r, "cannot read the UML COW bitmap: %s", strerror(-r));
			break;
		}
		for (c = chunk; c < chunk + n && !r; c++) {
			uint64_t sec, end = (c + 1) * s->chunk_sectors, set = 0;

			if (end > u->sectors)
				end = u->sectors;
			for (sec = c * s->chunk_sectors; sec < end; sec++)
				set += test_bit64(window, sec - first_sector);
			if (set == 0)
				continue;
			if (set < end - c * s->chunk_sectors && !s->read_only) {
				r = complete_chunk(s, u, c, window, first_sector);
				changed = 1;
			}
			set_bit64(u->chunk_map, c);
			u->nr_mapped++;
		}
		if (!r && changed) {
			/* Data first, then the bits that point at it. */
			if (fdatasync(s->cow_fd) < 0)
				r = -errno;
			if (!r)
				r = pwrite_full(s->cow_fd, window, len, u->bitmap_off + off);
			if (!r && fdatasync(s->cow_fd) < 0)
				r = -errno;
			if (r)
				cow_store_error(s, r, "cannot update the UML COW bitmap: %s", strerror(-r));
		}
	}
	free(window);
	return r;
}

static void uml_close(struct cow_store *s)
{
	struct uml_store *u = s->priv;

	if (!u)
		return;
	free(u->chunk_map);
	free(u->marked);
	free(u);
	s->priv = NULL;
}

static int uml_open(struct cow_store *s)
{
	struct uml_store *u = calloc(1, sizeof(*u));
	int r;

	if (!u)
		return -ENOMEM;
	s->priv = u;
	r = read_header(s, u);
	if (r)
		goto fail;
	if (u->data_off % COW_SECTOR) {
		r = cow_store_error(s, -EINVAL, "UML COW data offset %llu is not sector aligned",
				    (unsigned long long)u->data_off);
		goto fail;
	}
	r = ensure_size(s, u->data_off + u->size);
	if (r)
		goto fail;
	u->nr_chunks = (u->sectors + s->chunk_sectors - 1) / s->chunk_sectors;
	u->chunk_map = calloc(1, u->nr_chunks / 8 + 1);
	if (!u->chunk_map) {
		r = -ENOMEM;
		goto fail;
	}
	r = scan_bitmap(s, u);
	if (r)
		goto fail;
	return 0;
fail:
	uml_close(s);
	return r;
}

static uint64_t chunk_location(struct cow_store *s, struct uml_store *u, uint64_t chunk)
{
	return u->data_off / COW_SECTOR + chunk * s->chunk_sectors;
}

static int uml_locate(struct cow_store *s, uint64_t chunk, uint64_t *sector, int *data_valid)
{
	struct uml_store *u = s->priv;

	if (chunk >= u->nr_chunks)
		return cow_store_error(s, -ERANGE, "chunk %llu beyond the store",
				       (unsigned long long)chunk);
	*sector = chunk_location(s, u, chunk);
	*data_valid = test_bit64(u->chunk_map, chunk);
	return 0;
}

static int uml_mark(struct cow_store *s, uint64_t chunk, uint64_t sector)
{
	struct uml_store *u = s->priv;

	if (chunk >= u->nr_chunks || sector != chunk_location(s, u, chunk))
		return cow_store_error(s, -EINVAL, "chunk %llu reported at sector %llu, not where the UML format keeps it",
				       (unsigned long long)chunk, (unsigned long long)sector);
	if (test_bit64(u->chunk_map, chunk))
		return 0;
	if (array_reserve(&u->marked, &u->max_marked, u->nr_marked, sizeof(*u->marked)))
		return -ENOMEM;
	u->marked[u->nr_marked++] = chunk;
	set_bit64(u->chunk_map, chunk);
	u->nr_mapped++;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Set the bitmap bits of one chunk inside a block that starts at @block_off. */
static void set_chunk_bits(struct cow_store *s, struct uml_store *u, uint8_t *block,
			   uint64_t block_off, uint64_t chunk)
{
	uint64_t sec, end = (chunk + 1) * s->chunk_sectors;

	if (end > u->sectors)
		end = u->sectors;
	for (sec = chunk * s->chunk_sectors; sec < end; sec++)
		set_bit64(block, sec - block_off * 8);
}

/*
 * Write the bits of every chunk marked since the last commit: read, modify
 * and write each bitmap block that holds some.  A block is at least one
 * chunk's worth of bits; both are powers of two, so no chunk straddles.
 */
static int uml_commit(struct cow_store *s)
{
	struct uml_store *u = s->priv;
	uint64_t block_size = s->chunk_sectors / 8 > UML_BITMAP_BLOCK ?
				      s->chunk_sectors / 8 : UML_BITMAP_BLOCK;
	uint8_t *block;
	size_t i = 0;
	int r = 0;

	if (!u->nr_marked)
		return 0;
	block = malloc(block_size);
	if (!block)
		return -ENOMEM;
	qsort(u->marked, u->nr_marked, sizeof(*u->marked), cmp_u64);
	while (i < u->nr_marked && !r) {
		uint64_t block_off = u->marked[i] * s->chunk_sectors / 8 / block_size * block_size;
		uint64_t len = u->bitmap_len - block_off;

		if (len > block_size)
			len = block_size;
		r = pread_full(s->cow_fd, block, len, u->bitmap_off + block_off);
		for (; !r && i < u->nr_marked &&
		       u->marked[i] * s->chunk_sectors / 8 < block_off + len; i++)
			set_chunk_bits(s, u, block, block_off, u->marked[i]);
		if (!r)
			r = pwrite_full(s->cow_fd, block, len, u->bitmap_off + block_off);
	}
	free(block);
	if (!r && fdatasync(s->cow_fd) < 0)
		r = -errno;
	if (r)
		return cow_store_error(s, r, "cannot write the UML COW bitmap: %s", strerror(-r));
	u->nr_marked = 0;
	return 0;
}

static int uml_for_each_mapping(struct cow_store *s, cow_mapping_fn fn, void *ctx)
{
	struct uml_store *u = s->priv;
	uint64_t c;
	int r;

	for (c = 0; c < u->nr_chunks; c++) {
		if (!test_bit64(u->chunk_map, c))
			continue;
		r = fn(ctx, c, chunk_location(s, u, c));
		if (r)
			return r;
	}
	return 0;
}

/*
 * Runs of sectors whose bits are set, from the bitmap on disk: a read-only
 * open cannot complete partly written chunks, and their other sectors are
 * the base's, not what the COW file holds there.
 */
static int uml_for_each_extent(struct cow_store *s, cow_extent_fn fn, void *ctx)
{
	struct uml_store *u = s->priv;
	/* Bitmap bytes read at a time. */
	const uint64_t window = u->bitmap_len && u->bitmap_len < (1 << 20) ? u->bitmap_len : 1 << 20;
	uint8_t *bits = malloc(window);
	uint64_t off, run = 0, start = 0, sec;
	int r = 0;

	if (!bits)
		return -ENOMEM;
	for (off = 0; off < u->bitmap_len && !r; off += window) {
		uint64_t len = u->bitmap_len - off < window ? u->bitmap_len - off : window;

		r = pread_full(s->cow_fd, bits, len, u->bitmap_off + off);
		if (r) {
			cow_store_error(s, r, "cannot read the UML COW bitmap: %s", strerror(-r));
			break;
		}
		for (sec = off * 8; sec < (off + len) * 8 && sec < u->sectors && !r; sec++) {
			uint8_t byte = bits[(sec - off * 8) / 8];

			/* Whole bytes at once where nothing changes. */
			if (sec % 8 == 0 && sec + 8 <= u->sectors &&
			    ((byte == 0 && !run) || (byte == 0xff && run))) {
				run += byte ? 8 : 0;
				sec += 7;
				continue;
			}
			if (test_bit64(bits, sec - off * 8)) {
				if (!run++)
					start = sec;
				continue;
			}
			if (run)
				r = fn(ctx, start, run, u->data_off / COW_SECTOR + start);
			run = 0;
		}
	}
	if (!r && run)
		r = fn(ctx, start, run, u->data_off / COW_SECTOR + start);
	free(bits);
	return r;
}

static uint64_t uml_data_phase(struct cow_store *s)
{
	struct uml_store *u = s->priv;

	return (u->data_off / COW_SECTOR) % s->chunk_sectors;
}

static uint64_t uml_used_bytes(struct cow_store *s)
{
	struct uml_store *u = s->priv;

	return u->data_off + u->nr_mapped * s->chunk_sectors * COW_SECTOR;
}

static int uml_inspect(const void *head, size_t len, struct cow_store_info *info)
{
	const struct uml_header *h = head;
	size_t n;

	if (len < sizeof(*h))
		return -EINVAL;
	n = strnlen(h->backing_file, UML_PATH_LEN);
	if (n == UML_PATH_LEN || n >= sizeof(info->base_path))
		return -ENAMETOOLONG;
	memcpy(info->base_path, h->backing_file, n);
	info->base_path[n] = 0;
	info->chunk_sectors = 0;	/* sector bitmap: any chunk size */
	return 0;
}

static const struct cow_plugin uml_plugin = {
	.api_version = COW_PLUGIN_API_VERSION,
	.size = sizeof(struct cow_plugin),
	.name = "uml",
	.description = "User-Mode Linux COW v3 (sparse, same offsets as the base)",
	.probe = uml_probe,
	.create = uml_create,
	.open = uml_open,
	.close = uml_close,
	.locate = uml_locate,
	.mark = uml_mark,
	.commit = uml_commit,
	.for_each_mapping = uml_for_each_mapping,
	.data_phase = uml_data_phase,
	.used_bytes = uml_used_bytes,
	.inspect = uml_inspect,
	.for_each_extent = uml_for_each_extent,
};

COW_PLUGIN_REGISTER(uml_plugin)
