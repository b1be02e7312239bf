// SPDX-License-Identifier: GPL-2.0-only
/*
 * The qcow2 store on regular files, with qemu-img and qemu-io as the
 * outside judges: an image we create and write passes qemu-img check and
 * compares equal to a raw model; clusters come in order; an overlay made
 * and written by qemu opens with its clusters mapped and its zero clusters
 * reading as zeros; unsupported features are refused by name; a version 2
 * image is read and written as well; uncommitted mappings vanish cleanly.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "runs.h"
#include "sh.h"
#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);
static const struct cow_plugin *P;
static char dir[] = "/tmp/test-qcow2.XXXXXX";

#define CHUNK 65536
#define BASE_SIZE (4 * 1024 * 1024 + 12288) /* a partial last chunk */

struct fixture {
	struct cow_store s;
	char base[256], cow[256], model[256];
};

static void fill(const char *path, uint64_t size, int seed)
{
	char buf[4096];
	uint64_t off;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	for (off = 0; off < size; off += sizeof(buf)) {
		size_t len = size - off < sizeof(buf) ? size - off : sizeof(buf);

		memset(buf, (int)((off >> 12) + seed) & 0xff, sizeof(buf));
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
			abort();
	}
	close(fd);
}

/* Base and model files; the store is opened by the caller. */
static void setup(struct fixture *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->base, sizeof(f->base), "%s/%s.base", dir, name);
	snprintf(f->cow, sizeof(f->cow), "%s/%s.qcow2", dir, name);
	snprintf(f->model, sizeof(f->model), "%s/%s.model", dir, name);
	fill(f->base, BASE_SIZE, 1);
	sh("cp %s %s", f->base, f->model);
	f->s.base_fd = open(f->base, O_RDONLY);
	f->s.cow_fd = -1;
	f->s.base_size = BASE_SIZE;
	f->s.chunk_sectors = CHUNK / COW_SECTOR;
	f->s.base_name = f->base;
	f->s.cow_is_file = 1;
}

static int open_cow(struct fixture *f)
{
	struct stat st;

	if (f->s.priv)
		P->close(&f->s);
	if (f->s.cow_fd >= 0)
		close(f->s.cow_fd);
	f->s.cow_fd = open(f->cow, O_RDWR);
	if (f->s.cow_fd < 0 || fstat(f->s.cow_fd, &st))
		return -errno;
	f->s.cow_size = (uint64_t)st.st_size;
	f->s.error[0] = 0;
	return P->open(&f->s);
}

/* A new image, created by the plugin and opened. */
static int create_cow(struct fixture *f)
{
	f->s.cow_fd = open(f->cow, O_RDWR | O_CREAT | O_TRUNC, 0600);
	f->s.cow_size = 0;
	if (f->s.cow_fd < 0 || P->create(&f->s))
		return -1;
	return open_cow(f);
}

static void teardown(struct fixture *f)
{
	P->close(&f->s);
	close(f->s.base_fd);
	if (f->s.cow_fd >= 0)
		close(f->s.cow_fd);
	unlink(f->base);
	unlink(f->cow);
	unlink(f->model);
}

/* The kernel's fill of @chunk at @sector (in the model too), then mark(). */
static uint64_t fill_chunk(struct fixture *f, uint64_t chunk, uint64_t sector, int byte)
{
	static char buf[CHUNK];
	uint64_t cs = (uint64_t)f->s.chunk_sectors * COW_SECTOR, len = cs;
	uint64_t end = f->s.dev_size ? f->s.dev_size : f->s.base_size;
	int mfd;

	if (chunk * cs + len > end)
		len = end - chunk * cs;
	memset(buf, byte, sizeof(buf));
	if (pwrite(f->s.cow_fd, buf, len, (off_t)(sector * COW_SECTOR)) != (ssize_t)len)
		return 0;
	mfd = open(f->model, O_RDWR);
	if (pwrite(mfd, buf, len, (off_t)(chunk * cs)) != (ssize_t)len)
		abort();
	close(mfd);
	if (P->mark(&f->s, chunk, sector))
		return 0;
	return sector;
}

/* What the kernel does for a first write: copy, then the daemon marks. */
static uint64_t write_chunk(struct fixture *f, uint64_t chunk, int byte)
{
	uint64_t sector = 0;
	int valid;

	if (P->locate(&f->s, chunk, &sector, &valid))
		return 0;
	return fill_chunk(f, chunk, sector, byte);
}

struct seen {
	uint64_t chunk[64], sector[64];
	int n;
};

static int collect(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct seen *s = ctx;

	if (s->n < 64) {
		s->chunk[s->n] = chunk;
		s->sector[s->n] = sector;
	}
	s->n++;
	return 0;
}

/* Overwrite the 16-bit refcount of @cluster in the image's first refcount block. */
static void set_refcount(const char *path, uint64_t cluster, uint16_t ref)
{
	uint64_t rt, block;
	uint16_t v = htobe16(ref);
	int fd = open(path, O_RDWR);

	if (pread(fd, &rt, 8, 48) != 8 || pread(fd, &block, 8, (off_t)be64toh(rt)) != 8 ||
	    pwrite(fd, &v, 2, (off_t)(be64toh(block) + cluster * 2)) != 2)
		abort();
	close(fd);
}

static int qemu_check(const char *path)
{
	return sh("qemu-img check -q %s >/dev/null 2>&1", path);
}

static int qemu_compare(struct fixture *f)
{
	return sh("qemu-img compare -q -f qcow2 -F raw %s %s", f->cow, f->model);
}

static void test_create_write(void)
{
	struct fixture f;
	struct seen seen = { 0 };
	uint64_t s3, s4, s5, s64, sector = 0;
	int valid;

	TEST("create, write, commit: qemu-img agrees");
	setup(&f, "cw");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check of a new image");
	CHECK(qemu_compare(&f) == 0, "a new image reads as the base");

	s3 = write_chunk(&f, 3, 0xa3);
	s4 = write_chunk(&f, 4, 0xa4);
	s5 = write_chunk(&f, 5, 0xa5);
	s64 = write_chunk(&f, 64, 0xb6); /* the partial last chunk */
	CHECK(s3 && s4 == s3 + 128 && s5 == s4 + 128, "consecutive clusters: %llu %llu %llu",
	      (unsigned long long)s3, (unsigned long long)s4, (unsigned long long)s5);
	CHECK(s3 % 128 == P->data_phase(&f.s), "cluster aligned");
	CHECK(s64 > s5, "in order");
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after a commit");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare with the raw model");

	CHECK(open_cow(&f) == 0, "reopen: %s", f.s.error);
	CHECK(P->for_each_mapping(&f.s, collect, &seen) == 0 && seen.n == 4, "4 mappings, got %d",
	      seen.n);
	CHECK(seen.chunk[0] == 3 && seen.sector[0] == s3 && seen.chunk[3] == 64 &&
	      seen.sector[3] == s64, "chunk order and locations survive");
	CHECK(P->check(&f.s) == 0, "our own check: %s", f.s.error);

	/*
	 * A write that reaches a mapped chunk before cowd loaded the store
	 * faults on it: its cluster and data, not a fresh copy of the base.
	 */
	TEST("locate of a chunk the image maps gives its cluster, data valid");
	valid = 0;
	CHECK(P->locate(&f.s, 4, &sector, &valid) == 0 && sector == s4 && valid == 1,
	      "chunk 4: sector %llu valid %d, want %llu valid 1", (unsigned long long)sector, valid,
	      (unsigned long long)s4);
	CHECK(P->locate(&f.s, 6, &sector, &valid) == 0 && sector > s64 && valid == 0,
	      "an unmapped chunk gets a fresh cluster (%llu, valid %d)", (unsigned long long)sector,
	      valid);

	/* Marked but never committed: gone after a reopen, image still clean. */
	CHECK(write_chunk(&f, 20, 0xcc) != 0, "map chunk 20");
	P->close(&f.s);
	sh("cp %s %s.m && dd if=%s of=%s.m bs=65536 skip=20 seek=20 count=1 conv=notrunc status=none",
	   f.base, f.model, f.base, f.model);
	sh("mv %s.m %s", f.model, f.model);
	CHECK(qemu_check(f.cow) == 0, "uncommitted mapping: clean");
	CHECK(open_cow(&f) == 0, "%s", f.s.error);
	seen.n = 0;
	P->for_each_mapping(&f.s, collect, &seen);
	CHECK(seen.n == 4, "the uncommitted chunk is not mapped (%d)", seen.n);
	CHECK(P->used_bytes(&f.s) >= (s64 + 128) * COW_SECTOR, "used bytes cover the data");

	/* A cluster counted but unused is a leak; one used but not counted is corruption. */
	TEST("check: leaks and corruption, as qemu-img sees them");
	P->close(&f.s);
	set_refcount(f.cow, (s64 + 128) * COW_SECTOR / CHUNK + 3, 1);
	CHECK(open_cow(&f) == 0 && P->check(&f.s) == 1 && strstr(f.s.error, "1 leaked"),
	      "a leak: %s", f.s.error);
	CHECK(qemu_check(f.cow) == 3, "qemu-img check sees the leak too");
	P->close(&f.s);
	set_refcount(f.cow, s4 * COW_SECTOR / CHUNK, 0);
	CHECK(open_cow(&f) == 0 && P->check(&f.s) < 0 && strstr(f.s.error, "corrupt qcow2 image"),
	      "corruption: %s", f.s.error);
	CHECK(qemu_check(f.cow) == 2, "qemu-img check sees the corruption too");
	teardown(&f);
}

static void test_qemu_overlay(void)
{
	struct fixture f;
	struct seen seen = { 0 };
	char zero[CHUNK], buf[CHUNK];
	int i, all_zero;

	TEST("an overlay made and written by qemu");
	setup(&f, "ov");
	CHECK(sh("qemu-img create -q -f qcow2 -b %s -F raw %s", f.base, f.cow) == 0, "qemu-img create");
	CHECK(sh("qemu-io -f qcow2 -c 'write -P 0xab 128k 64k' -c 'write -z 1M 64k' "
		 "-c 'write -P 0xcd 200k 4k' %s >/dev/null", f.cow) == 0, "qemu-io");
	sh("qemu-io -f raw -c 'write -P 0xab 128k 64k' -c 'write -z 1M 64k' "
	   "-c 'write -P 0xcd 200k 4k' %s >/dev/null", f.model);
	CHECK(open_cow(&f) == 0, "open: %s", f.s.error);
	CHECK(P->for_each_mapping(&f.s, collect, &seen) == 0 && seen.n == 3,
	      "3 mapped chunks (2, 3, 16), got %d", seen.n);
	CHECK(seen.chunk[0] == 2 && seen.chunk[1] == 3 && seen.chunk[2] == 16, "chunks %llu %llu %llu",
	      (unsigned long long)seen.chunk[0], (unsigned long long)seen.chunk[1],
	      (unsigned long long)seen.chunk[2]);
	memset(zero, 0, sizeof(zero));
	all_zero = pread(f.s.cow_fd, buf, CHUNK, (off_t)(seen.sector[2] * COW_SECTOR)) == CHUNK &&
		   !memcmp(buf, zero, CHUNK);
	CHECK(all_zero, "the zero cluster became a cluster of zeros");
	for (i = 0; i < 3; i++) {
		uint64_t sector = 0;
		int valid = 0;

		CHECK(P->locate(&f.s, seen.chunk[i], &sector, &valid) == 0 &&
		      sector == seen.sector[i] && valid == 1,
		      "locate of qemu's chunk %llu: sector %llu valid %d, want %llu valid 1",
		      (unsigned long long)seen.chunk[i], (unsigned long long)sector, valid,
		      (unsigned long long)seen.sector[i]);
	}
	CHECK(P->check(&f.s) == 0, "our check: %s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after the zero cluster was allocated");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare with the raw model");
	for (i = 0; i < 3; i++)
		write_chunk(&f, 30 + (uint64_t)i, 0x30 + i);
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after our writes");
	CHECK(qemu_compare(&f) == 0, "compare after our writes");
	teardown(&f);
}

#define SET_CRYPT_METHOD(m)                                                                \
	"sh -c 'printf \"\\\\0\\\\0\\\\0\\\\" m "\" | dd bs=1 seek=32 conv=notrunc status=none of=\"$0\"'"

static void expect_refused(const char *name, const char *create, const char *io,
			   const char *want)
{
	struct fixture f;
	int r;

	TEST(name);
	setup(&f, "rf");
	CHECK(sh("qemu-img create -q -f qcow2 -b %s -F raw %s %s >/dev/null", f.base, create,
		 f.cow) == 0, "qemu-img create %s", create);
	if (io)
		CHECK(sh("%s %s >/dev/null", io, f.cow) == 0, "%s", io);
	r = open_cow(&f);
	CHECK(r < 0 && strstr(f.s.error, want), "want '%s', got %d '%s'", want, r, f.s.error);
	if (!r)
		P->close(&f.s);
	close(f.s.base_fd);
	close(f.s.cow_fd);
	sh("rm -f %s/rf.*", dir);
}

static void test_refusals(void)
{
	struct fixture f;
	uint64_t sector;
	int valid;

	expect_refused("compressed clusters refused", "",
		       "qemu-io -f qcow2 -c 'write -c -P 1 0 64k'", "compressed clusters");
	expect_refused("extended L2 refused", "-o extended_l2=on", NULL, "extended L2");
	expect_refused("external data file refused", "-o data_file=" "/tmp/test-qcow2-data.raw",
		       NULL, "external data file");
	unlink("/tmp/test-qcow2-data.raw");
	/*
	 * qemu-img times PBKDF2 to create a LUKS image and fails on machines
	 * whose thread CPU clock is coarse ("Unable to get accurate CPU
	 * usage"), so set crypt_method (header offset 32) by hand instead:
	 * 1 is the old AES scheme, 2 is LUKS.
	 */
	expect_refused("AES encryption refused", "", SET_CRYPT_METHOD("1"), "encryption");
	expect_refused("LUKS encryption refused", "", SET_CRYPT_METHOD("2"), "encryption");
	expect_refused("internal snapshots refused", "", "qemu-img snapshot -c snap1",
		       "internal snapshots");
	expect_refused("other cluster size refused", "-o cluster_size=4096", NULL,
		       "4096-byte clusters");

	/* Version 2 (compat=0.10): read and written like version 3. */
	TEST("version 2: read and written, qemu-img agrees");
	setup(&f, "v2");
	sh("qemu-img create -q -f qcow2 -o compat=0.10 -b %s -F raw %s", f.base, f.cow);
	sh("qemu-io -f qcow2 -c 'write -P 0x22 64k 64k' %s >/dev/null", f.cow);
	sh("qemu-io -f raw -c 'write -P 0x22 64k 64k' %s >/dev/null", f.model);
	CHECK(open_cow(&f) == 0, "a v2 image opens: %s", f.s.error);
	CHECK(P->locate(&f.s, 1, &sector, &valid) == 0 && valid, "qemu's cluster is mapped: %s",
	      f.s.error);
	CHECK(write_chunk(&f, 9, 0x99) && write_chunk(&f, 10, 0xaa) && write_chunk(&f, 64, 0xbb),
	      "first writes: %s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check of the written v2 image");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare with the raw model");
	CHECK(sh("qemu-img info %s | grep -q 'compat: 0.10'", f.cow) == 0, "still version 2");
	teardown(&f);
}

/*
 * The base is read raw: an image whose backing file is another format, or
 * that does not say and whose base looks like an image, or that has no
 * backing file at all, is refused with the reason.
 */
static void test_backing(void)
{
	struct fixture f;
	char other[300];
	int r, fd;

	TEST("a backing file of another format is refused");
	setup(&f, "bk");
	snprintf(other, sizeof(other), "%s/bk.other", dir);
	CHECK(sh("qemu-img create -q -f qcow2 %s %d", other, BASE_SIZE) == 0, "qemu-img create");
	CHECK(sh("qemu-img create -q -f qcow2 -b %s -F qcow2 %s", other, f.cow) == 0, "qemu-img create");
	r = open_cow(&f);
	CHECK(r == -EINVAL && strstr(f.s.error, "backing file is a qcow2 image"), "got %d '%s'", r,
	      f.s.error);

	TEST("no backing format: a base that is an image is refused");
	CHECK(sh("qemu-img create -q -f qcow2 -b %s -F raw %s", f.base, f.cow) == 0, "qemu-img create");
	/* The backing format extension (after qemu's 112-byte header) made unknown. */
	CHECK(sh("printf '\\022\\064\\126\\170' | dd bs=1 seek=112 conv=notrunc status=none of=%s",
		 f.cow) == 0, "patch");
	CHECK(open_cow(&f) == 0, "the raw base opens: %s", f.s.error);
	P->close(&f.s);
	f.s.priv = NULL;
	fd = open(other, O_RDONLY);
	CHECK(fd >= 0, "open %s", other);
	close(f.s.base_fd);
	f.s.base_fd = fd;
	r = open_cow(&f);
	CHECK(r == -EINVAL && strstr(f.s.error, "the base is a qcow2 image"), "got %d '%s'", r,
	      f.s.error);

	TEST("an image without a backing file is refused");
	CHECK(sh("qemu-img create -q -f qcow2 %s %d", f.cow, BASE_SIZE) == 0, "qemu-img create");
	r = open_cow(&f);
	CHECK(r == -EINVAL && strstr(f.s.error, "no backing file"), "got %d '%s'", r, f.s.error);
	f.s.priv = NULL;
	unlink(other);
	teardown(&f);
}

/* Set the big-endian header field of @bytes (4 or 8) at @off of @path. */
static void poke(const char *path, off_t off, int bytes, uint64_t value)
{
	uint64_t v64 = htobe64(value);
	uint32_t v32 = htobe32((uint32_t)value);
	int fd = open(path, O_RDWR);

	if (pwrite(fd, bytes == 8 ? (void *)&v64 : (void *)&v32, (size_t)bytes, off) != bytes)
		abort();
	close(fd);
}

static void test_crafted_headers(void)
{
	/* Offsets of the header fields. */
	enum { BACKING_OFF = 8, BACKING_SIZE = 16, L1_SIZE = 36, L1_OFF = 40, RT_OFF = 48,
	       RT_CLUSTERS = 56, HEADER_LEN = 100 };
	static const struct {
		const char *what;
		off_t off;
		int bytes;
		uint64_t value;
		const char *want;
	} cases[] = {
		{ "l1_size 2^31 - 1 (a 16 GiB table)", L1_SIZE, 4, 0x7fffffff, "L1 table" },
		{ "L1 table past the file", L1_OFF, 8, 1ULL << 40, "L1 table" },
		{ "L1 table offset that wraps", L1_OFF, 8, 0ULL - 65536, "L1 table" },
		{ "L1 table over the header", L1_OFF, 8, 0, "L1 table" },
		{ "refcount table of 2^32 - 1 clusters", RT_CLUSTERS, 4, 0xffffffff, "refcount table" },
		{ "refcount table of no cluster", RT_CLUSTERS, 4, 0, "refcount table" },
		{ "refcount table past the file", RT_OFF, 8, 1ULL << 40, "refcount table" },
		{ "backing name offset that wraps", BACKING_OFF, 8, 0ULL - 8, "backing file" },
		{ "backing name past the first cluster", BACKING_SIZE, 4, 70000, "backing file" },
		{ "header length past the first cluster", HEADER_LEN, 4, 1 << 20, "header length" },
	};
	struct fixture f;
	struct cow_store_info info;
	char head[CHUNK], saved[CHUNK];
	uint64_t rt_off;
	size_t i;
	int fd, r;

	TEST("crafted headers: every size and offset bounded");
	setup(&f, "ch");
	CHECK(sh("qemu-img create -q -f qcow2 -b %s -F raw %s", f.base, f.cow) == 0, "qemu-img create");
	fd = open(f.cow, O_RDWR);
	if (pread(fd, saved, sizeof(saved), 0) != (ssize_t)sizeof(saved))
		abort();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		poke(f.cow, cases[i].off, cases[i].bytes, cases[i].value);
		if (pread(fd, head, sizeof(head), 0) != (ssize_t)sizeof(head))
			abort();
		/* inspect() reads only what it was given, and never wraps. */
		P->inspect(head, sizeof(head), &info);
		r = open_cow(&f);
		CHECK(r == -EINVAL && strstr(f.s.error, cases[i].want), "%s: %d '%s'", cases[i].what, r,
		      f.s.error);
		if (!r)
			P->close(&f.s);
		if (pwrite(fd, saved, sizeof(saved), 0) != (ssize_t)sizeof(saved))
			abort();
	}
	memcpy(&rt_off, saved + RT_OFF, 8);
	poke(f.cow, L1_OFF, 8, be64toh(rt_off));
	r = open_cow(&f);
	CHECK(r == -EINVAL && strstr(f.s.error, "overlap"), "L1 table on the refcount table: %d '%s'",
	      r, f.s.error);
	if (!r)
		P->close(&f.s);
	if (pwrite(fd, saved, sizeof(saved), 0) != (ssize_t)sizeof(saved))
		abort();

	TEST("inspect of a 72-byte version 3 header reads 72 bytes");
	{
		char *short_head = malloc(72);

		memcpy(short_head, saved, 72);
		/* The backing name lies past those 72 bytes (ASan: no read of it). */
		r = P->inspect(short_head, 72, &info);
		CHECK(r == -ENAMETOOLONG, "the name is past what was read: %d", r);
		free(short_head);
	}
	CHECK(open_cow(&f) == 0, "the untouched image opens: %s", f.s.error);
	close(fd);
	teardown(&f);
}

/*
 * cowd killed while the kernel copies a chunk it placed: the new cowd is
 * told of the copy (hold) before it allocates, and never gives that
 * cluster out again.
 */
static void test_hold(void)
{
	struct fixture f;
	uint64_t held = 0, sector = 0;
	int valid = 0;

	TEST("hold: a cluster the kernel is filling is never given again");
	setup(&f, "hold");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	CHECK(P->locate(&f.s, 7, &held, &valid) == 0 && !valid, "the old cowd places chunk 7: %s",
	      f.s.error);
	CHECK(open_cow(&f) == 0, "the new cowd opens the image: %s", f.s.error);
	CHECK(P->hold(&f.s, 7, held) == 0, "%s", f.s.error);
	CHECK(P->locate(&f.s, 9, &sector, &valid) == 0 && sector != held,
	      "chunk 9 gets sector %llu, chunk 7's copy is filling %llu", (unsigned long long)sector,
	      (unsigned long long)held);
	CHECK(fill_chunk(&f, 9, sector, 0x99) && fill_chunk(&f, 7, held, 0x77), "%s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare with the raw model");
	CHECK(P->hold(&f.s, 7, held + 1) == -EINVAL, "a location off the cluster grid is refused");
	/* Found by fuzz-cowd-qcow2: the next locate then walked 2^40 refcount blocks. */
	CHECK(P->hold(&f.s, 7, (1ULL << 50) / COW_SECTOR) == -EINVAL,
	      "a location past the image's end is refused");
	CHECK(P->locate(&f.s, 11, &sector, &valid) == 0, "%s", f.s.error);
	teardown(&f);
}

/*
 * Zero clusters written into the image while a copy of an earlier daemon
 * is in flight: open makes them real at the end the refcounts give, which
 * is where that copy lands.  The hold must be refused, never both kept.
 */
static void test_hold_over_zero_cluster(void)
{
	struct fixture f;
	uint64_t held = 0, zero = 0;
	int valid = 0;

	TEST("hold: a copy in flight where open made a zero cluster real is refused");
	setup(&f, "holdzero");
	CHECK(sh("qemu-img create -q -f qcow2 -b %s -F raw %s && "
		 "qemu-io -f qcow2 -c 'write -P 0xab 128k 64k' %s >/dev/null",
		 f.base, f.cow, f.cow) == 0, "qemu-img create, qemu-io");
	CHECK(open_cow(&f) == 0, "%s", f.s.error);
	CHECK(P->locate(&f.s, 7, &held, &valid) == 0 && !valid, "the old cowd places chunk 7: %s",
	      f.s.error);
	P->close(&f.s);
	CHECK(sh("qemu-io -f qcow2 -c 'write -z 1M 64k' %s >/dev/null", f.cow) == 0, "qemu-io");
	CHECK(open_cow(&f) == 0, "the new cowd opens the image: %s", f.s.error);
	CHECK(P->hold(&f.s, 7, held) == -EEXIST, "hold of sector %llu: %s",
	      (unsigned long long)held, f.s.error);
	/* The zero chunk itself, written before cowd loaded it, is recorded. */
	CHECK(P->locate(&f.s, 16, &zero, &valid) == 0 && valid && zero == held,
	      "chunk 16 is at sector %llu: %s", (unsigned long long)zero, f.s.error);
	CHECK(P->mark(&f.s, 16, zero) == 0 && P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check");
	teardown(&f);
}

/*
 * A relative backing name is looked up next to the image, as qemu does,
 * even when the current directory holds a file of that name.
 */
static void test_relative_base(void)
{
	char cowctl[4096], plugins[4096];

	TEST("cowctl: a relative base name resolves next to the store");
	if (!realpath("build/bin/cowctl", cowctl) || !realpath("build/plugins", plugins)) {
		CHECK(0, "build/bin/cowctl and build/plugins are needed (make all)");
		return;
	}
	sh("mkdir -p %s/rel %s/cwd", dir, dir);
	CHECK(sh("cd %s/rel && truncate -s 4M base.img && qemu-io -f raw -c 'write -P 0x11 0 4M' base.img >/dev/null && "
		 "qemu-img create -q -f qcow2 -b base.img -F raw q.qcow2 && "
		 "qemu-io -c 'write -P 0x22 64k 64k' q.qcow2 >/dev/null && "
		 "qemu-img convert -O raw q.qcow2 want.img", dir) == 0, "a qcow2 image over a relative base");
	CHECK(sh("cd %s/cwd && truncate -s 4M base.img && qemu-io -f raw -c 'write -P 0x33 0 4M' base.img >/dev/null",
		 dir) == 0, "another base.img in the current directory");
	CHECK(sh("cd %s/cwd && COWD_PLUGIN_DIR=%s %s merge ../rel/q.qcow2 --out merged.img >/dev/null",
		 dir, plugins, cowctl) == 0, "cowctl merge");
	CHECK(sh("cmp -s %s/cwd/merged.img %s/rel/want.img", dir, dir) == 0,
	      "the merge read the base next to the image, as qemu-img convert does");

	/*
	 * Zero clusters read as zeros, and merge reads its source without
	 * changing it (a read-write open would make them real clusters).
	 */
	TEST("cowctl merge: zero clusters, and the source stays as it was");
	CHECK(sh("cd %s/rel && qemu-io -c 'write -z 1M 192k' -c 'write -z -u 2M 64k' -c 'write -P 0x44 3M 64k' q.qcow2 >/dev/null && "
		 "qemu-img convert -O raw q.qcow2 want2.img && sha256sum q.qcow2 >before.sum", dir) == 0,
	      "zero clusters written by qemu-io");
	CHECK(sh("cd %s/rel && COWD_PLUGIN_DIR=%s %s merge q.qcow2 --out merged2.img >/dev/null", dir, plugins,
		 cowctl) == 0, "cowctl merge");
	CHECK(sh("cmp -s %s/rel/merged2.img %s/rel/want2.img", dir, dir) == 0,
	      "the merge equals qemu-img convert: zero clusters are zeros");
	CHECK(sh("cd %s/rel && sha256sum -c --quiet before.sum", dir) == 0, "the image did not change");
	sh("rm -rf %s/rel %s/cwd", dir, dir);
}

/* The big-endian 64-bit value at byte @off of @path. */
static uint64_t be64_at(const char *path, uint64_t off)
{
	uint64_t v = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || pread(fd, &v, 8, (off_t)off) != 8)
		abort();
	close(fd);
	return be64toh(v);
}

/*
 * locate() of a chunk the committed image does not map reads nothing:
 * entries of unmapped chunks made garbage under it do not matter.  A
 * mapped chunk (at open, or by a commit since) is still looked up.
 */
static void test_locate_no_io(void)
{
	struct fixture f;
	uint64_t s4, s10, l2, sector = 0, junk = UINT64_MAX;
	int fd, valid;

	TEST("locate reads the image only for chunks it maps");
	setup(&f, "lo");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	s4 = write_chunk(&f, 4, 0xa4);
	CHECK(s4 && P->commit(&f.s) == 0, "map chunk 4: %s", f.s.error);
	CHECK(open_cow(&f) == 0, "reopen: %s", f.s.error);
	/* L1 offset at header byte 40; chunks 0-63 share L2 table 0. */
	l2 = be64_at(f.cow, be64_at(f.cow, 40)) & 0x00fffffffffffe00ULL;
	CHECK(l2 != 0, "chunk 4 has an L2 table");
	fd = open(f.cow, O_RDWR);
	CHECK(pwrite(fd, &junk, 8, (off_t)(l2 + 6 * 8)) == 8 &&
	      pwrite(fd, &junk, 8, (off_t)(l2 + 7 * 8)) == 8, "garble the entries of chunks 6, 7");
	close(fd);
	valid = 1;
	CHECK(P->locate(&f.s, 6, &sector, &valid) == 0 && valid == 0 && sector > s4,
	      "unmapped chunk 6 gets a fresh cluster without reading its entry: %s", f.s.error);
	valid = 0;
	CHECK(P->locate(&f.s, 4, &sector, &valid) == 0 && valid == 1 && sector == s4,
	      "chunk 4, mapped at open: its cluster, data valid (%llu, %d)",
	      (unsigned long long)sector, valid);
	s10 = write_chunk(&f, 10, 0xaa);
	CHECK(s10 && P->commit(&f.s) == 0, "map chunk 10: %s", f.s.error);
	valid = 0;
	CHECK(P->locate(&f.s, 10, &sector, &valid) == 0 && valid == 1 && sector == s10,
	      "chunk 10, mapped by a commit: its cluster, data valid (%llu, %d)",
	      (unsigned long long)sector, valid);
	valid = 1;
	CHECK(P->locate(&f.s, 7, &sector, &valid) == 0 && valid == 0,
	      "unmapped chunk 7 after the commit: fresh, nothing read: %s", f.s.error);
	teardown(&f);
}

/*
 * for_each_mapping() (each reload) lists the mappings from the tables in
 * memory: those read at open and those committed since.  Entries garbled
 * on disk under the plugin do not show.
 */
static void test_l2_cache(void)
{
	struct fixture f;
	struct seen seen = { 0 };
	uint64_t s4, s9, l2, junk = UINT64_MAX;
	int fd;

	TEST("reloads list the mappings from the L2 tables in memory");
	setup(&f, "l2c");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	s4 = write_chunk(&f, 4, 0xa4);
	CHECK(s4 && P->commit(&f.s) == 0, "map chunk 4: %s", f.s.error);
	CHECK(open_cow(&f) == 0, "reopen: %s", f.s.error);
	s9 = write_chunk(&f, 9, 0xa9);
	CHECK(s9 && P->commit(&f.s) == 0, "map chunk 9: %s", f.s.error);
	l2 = be64_at(f.cow, be64_at(f.cow, 40)) & 0x00fffffffffffe00ULL;
	fd = open(f.cow, O_RDWR);
	CHECK(pwrite(fd, &junk, 8, (off_t)(l2 + 4 * 8)) == 8 &&
	      pwrite(fd, &junk, 8, (off_t)(l2 + 9 * 8)) == 8, "garble the entries of chunks 4, 9");
	close(fd);
	CHECK(P->for_each_mapping(&f.s, collect, &seen) == 0, "%s", f.s.error);
	CHECK(seen.n == 2 && seen.chunk[0] == 4 && seen.sector[0] == s4 && seen.chunk[1] == 9 &&
	      seen.sector[1] == s9, "%d mappings: chunk %llu at %llu, chunk %llu at %llu", seen.n,
	      (unsigned long long)seen.chunk[0], (unsigned long long)seen.sector[0],
	      (unsigned long long)seen.chunk[1], (unsigned long long)seen.sector[1]);
	teardown(&f);
}

/*
 * 4 KiB clusters over a 64 MiB base: an L2 table maps 2 MiB, so chunks
 * 512 apart need tables of their own (32 in all).
 */
#define SMALL_CHUNK 4096
#define SMALL_TABLE 512
#define SMALL_BASE (64ULL << 20)

static void setup_small(struct fixture *f, const char *name)
{
	setup(f, name);
	f->s.chunk_sectors = SMALL_CHUNK / COW_SECTOR;
	f->s.base_size = SMALL_BASE;
	CHECK(truncate(f->base, SMALL_BASE) == 0 && truncate(f->model, SMALL_BASE) == 0,
	      "a 64 MiB base");
}

/*
 * grant: runs of fresh clusters at the end of the image for chunks not
 * known yet; used ones are marked by chunks that need new L2 tables, and
 * qemu-img agrees after the commit; unused ones are free again after a
 * crash (reopen), and after ungrant().
 */
static void test_grant(void)
{
	struct fixture f;
	uint64_t g1 = 0, n1 = 0, g2 = 0, n2 = 0, g3 = 0, n3 = 0, sector = 0, i;
	int valid = 1;

	TEST("grant: fresh clusters, used by chunks in new L2 tables; qemu-img agrees");
	setup_small(&f, "grant");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	CHECK(P->grant(&f.s, 16, &g1, &n1) == 0 && n1 == 16, "grant 16: %s", f.s.error);
	CHECK(P->locate(&f.s, 5, &sector, &valid) == 0 && !valid && sector >= g1 + 16 * 8,
	      "locate after a grant: sector %llu, grant %llu+16", (unsigned long long)sector,
	      (unsigned long long)g1);
	CHECK(fill_chunk(&f, 5, sector, 0x55), "fill chunk 5: %s", f.s.error);
	/* Eight granted clusters, for chunks of eight L2 tables (one exists). */
	for (i = 0; i < 8; i++)
		CHECK(fill_chunk(&f, i * SMALL_TABLE + 1, g1 + i * 8, 0x10 + (int)i),
		      "granted cluster %llu for chunk %llu: %s", (unsigned long long)i,
		      (unsigned long long)(i * SMALL_TABLE + 1), f.s.error);
	CHECK(P->commit(&f.s) == 0, "commit: %s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare with the raw model");

	CHECK(P->grant(&f.s, 4, &g2, &n2) == 0 && n2 == 4, "grant 4: %s", f.s.error);
	CHECK(open_cow(&f) == 0, "reopen, as after a crash: %s", f.s.error);
	CHECK(P->grant(&f.s, 4, &g3, &n3) == 0 && g3 == g2 && n3 == 4,
	      "the unused grant is free again: %llu, was %llu", (unsigned long long)g3,
	      (unsigned long long)g2);
	P->ungrant(&f.s, g3, n3);
	CHECK(P->grant(&f.s, 2, &g2, &n2) == 0 && g2 == g3 && n2 == 2,
	      "ungrant gives the run back: %llu, was %llu", (unsigned long long)g2,
	      (unsigned long long)g3);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after the crash");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare after the crash");
	teardown(&f);
}

/*
 * A store that cannot grow (a block device): grant() hands out only what
 * the store can hold with the L2 tables every granted cluster may need, so
 * a commit never runs out of space, even when each granted cluster starts
 * a table of its own; and room for a locate() stays out of grants.
 */
static void test_grant_full(void)
{
	struct fixture f;
	uint64_t g[64], n[64], total = 0, sector = 0, chunk, i, k = 0;
	int runs = 0, valid, r = 0;

	TEST("grant on a store that cannot grow: every grant usable, commits never fail");
	setup_small(&f, "grantfull");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	CHECK(ftruncate(f.s.cow_fd, 256 << 10) == 0, "a 256 KiB store");
	f.s.cow_size = 256 << 10;
	f.s.cow_is_file = 0;	/* store_grow() cannot grow it */
	while (runs < 64 && !(r = P->grant(&f.s, 1000, &g[runs], &n[runs])))
		total += n[runs++];
	CHECK(r == -ENOSPC && total > 4, "grants until the store is full: %llu in %d runs (%d)",
	      (unsigned long long)total, runs, r);
	valid = 1;
	CHECK(P->locate(&f.s, 31 * SMALL_TABLE + 7, &sector, &valid) == 0 && !valid,
	      "a fault after the grants still finds a cluster, and its table: %s", f.s.error);
	CHECK(fill_chunk(&f, 31 * SMALL_TABLE + 7, sector, 0x77), "%s", f.s.error);
	/* Granted cluster k for a chunk of table k % 31 (tables 0-30): new tables first. */
	for (r = 0; r < runs; r++)
		for (i = 0; i < n[r]; i++, k++) {
			chunk = k % 31 * SMALL_TABLE + k / 31;
			CHECK(fill_chunk(&f, chunk, g[r] + i * 8, 0x20 + (int)(k % 64)),
			      "granted cluster %llu for chunk %llu: %s", (unsigned long long)k,
			      (unsigned long long)chunk, f.s.error);
		}
	CHECK(P->commit(&f.s) == 0, "commit of every granted cluster: %s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare with the raw model");
	teardown(&f);
}

/*
 * What cowd gives back to the host when the device is gone: granted and
 * grown clusters nothing uses, never data or metadata.  Holes punched
 * there, the image still checks clean and reads the same.
 */
static void test_unused(void)
{
	struct fixture f;
	struct runs r = { 0 };
	uint64_t g = 0, n = 0, a, b, i, total = 0;
	struct stat st;
	int fd;

	TEST("for_each_unused: unused grants and growth, never data or metadata");
	setup(&f, "unused");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	a = write_chunk(&f, 3, 0x33);
	CHECK(P->grant(&f.s, 8, &g, &n) == 0 && n == 8, "grant 8: %s", f.s.error);
	CHECK(fill_chunk(&f, 7, g, 0x77) && fill_chunk(&f, 9, g + 128, 0x99), "%s", f.s.error);
	b = write_chunk(&f, 60, 0x60);
	CHECK(a && b && P->commit(&f.s) == 0, "commit: %s", f.s.error);
	CHECK(P->for_each_unused(&f.s, collect_run, &r) == 0, "%s", f.s.error);
	CHECK(r.n >= 2 && r.n <= 64, "%llu runs", (unsigned long long)r.n);
	for (i = 0; i < r.n && i < 64; i++)
		total += r.count[i];
	CHECK(in_runs(&r, g + 2 * 128) && in_runs(&r, g + 7 * 128),
	      "the 6 granted clusters not used are reported");
	CHECK(!in_runs(&r, a) && !in_runs(&r, b) && !in_runs(&r, g) && !in_runs(&r, g + 128) &&
	      !in_runs(&r, 0), "no data cluster, no header reported");
	CHECK(fstat(f.s.cow_fd, &st) == 0 && total >= 6 * 128 && total * COW_SECTOR < (uint64_t)st.st_size,
	      "%llu sectors of a %lld-byte image", (unsigned long long)total, (long long)st.st_size);
	fd = open(f.cow, O_RDWR);
	for (i = 0; i < r.n && i < 64; i++)
		CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)(r.first[i] * COW_SECTOR), (off_t)(r.count[i] * COW_SECTOR)) == 0,
		      "punch a hole");
	close(fd);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after the holes");
	CHECK(qemu_compare(&f) == 0, "qemu-img compare after the holes");
	CHECK(open_cow(&f) == 0, "reopen: %s", f.s.error);
	r.n = 0;
	CHECK(P->for_each_unused(&f.s, collect_run, &r) == 0 && !in_runs(&r, a) && !in_runs(&r, g),
	      "after a reopen, still no data reported");
	teardown(&f);
}


/*
 * cowctl resize: the image grows, in place while its L1 table's clusters
 * have room, else with the table moved; past the base it reads zeros, as
 * qemu reads an overlay larger than its backing file.
 */
static void test_grow(void)
{
	const uint64_t big = 5ULL << 40, far = (9ULL << 39) / CHUNK; /* 5 TiB; chunk at 4.5 TiB */
	uint64_t grown = 40ULL << 20, s64, s70, sfar, sector;
	static char junk[CHUNK - BASE_SIZE % CHUNK];
	struct seen seen = { 0 };
	struct fixture f;
	int valid;

	TEST("grow: in place, then with the L1 table moved; qemu-img agrees");
	setup(&f, "grow");
	CHECK(create_cow(&f) == 0, "%s", f.s.error);
	CHECK(f.s.dev_size == BASE_SIZE, "a new image holds the base's size (%llu)",
	      (unsigned long long)f.s.dev_size);
	s64 = write_chunk(&f, 64, 0xb6);
	CHECK(write_chunk(&f, 3, 0xa3) && s64, "write chunks 3 and 64");
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	/* What an older module left past the base's end in the last chunk's cluster. */
	memset(junk, 0xee, sizeof(junk));
	CHECK(pwrite(f.s.cow_fd, junk, sizeof(junk), (off_t)(s64 * COW_SECTOR + BASE_SIZE % CHUNK)) ==
	      sizeof(junk), "junk in the cluster's tail");
	CHECK(P->locate(&f.s, 70, &sector, &valid) != 0, "chunk 70 is past the image");
	CHECK(P->grow(&f.s, BASE_SIZE) == 0 && f.s.dev_size == BASE_SIZE, "growing to its size: nothing");
	CHECK(P->grow(&f.s, grown) == 0, "grow to 40 MiB: %s", f.s.error);
	CHECK(f.s.dev_size == grown, "dev_size follows");
	CHECK(sh("truncate -s %llu %s", (unsigned long long)grown, f.model) == 0, "grow the model");
	s70 = write_chunk(&f, 70, 0xc7);
	CHECK(s70 != 0, "chunk 70 past the base: %s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after growing in place");
	CHECK(sh("qemu-img info %s | grep -q 'virtual size: 40 MiB'", f.cow) == 0, "qemu-img info: 40 MiB");
	CHECK(qemu_compare(&f) == 0, "zeros past the base's end (the last chunk's too); chunk 70 written");
	CHECK(open_cow(&f) == 0 && f.s.dev_size == grown, "reopened: still 40 MiB (%s)", f.s.error);

	CHECK(P->grow(&f.s, big) == 0, "grow to 5 TiB: %s", f.s.error);
	sfar = write_chunk(&f, far, 0xd9);
	CHECK(sfar != 0, "a chunk at 4.5 TiB: %s", f.s.error);
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(qemu_check(f.cow) == 0, "qemu-img check after moving the L1 table (no leak of the old one)");
	CHECK(sh("qemu-io -f qcow2 -c 'read -q -P 0xd9 4608G 64k' -c 'read -q -P 0xc7 %llu 64k' "
		 "-c 'read -q -P 0 4607G 64k' -c 'read -q -P 0xa3 192k 64k' %s >/dev/null",
		 70ULL * CHUNK, f.cow) == 0, "qemu-io reads every part back");
	CHECK(open_cow(&f) == 0 && f.s.dev_size == big, "reopened: 5 TiB (%s)", f.s.error);
	CHECK(P->for_each_mapping(&f.s, collect, &seen) == 0 && seen.n == 4 &&
	      seen.chunk[2] == 70 && seen.sector[2] == s70 && seen.chunk[3] == far &&
	      seen.sector[3] == sfar, "the mappings survive (%d)", seen.n);
	CHECK(P->check(&f.s) == 0, "our own check: %s", f.s.error);
	teardown(&f);
}

int main(void)
{
	int r;

	P = cow_plugin_init();
	r = qemu_test_setup(dir, "test-qcow2");
	if (r)
		return r;
	test_create_write();
	test_qemu_overlay();
	test_refusals();
	test_backing();
	test_crafted_headers();
	test_hold();
	test_hold_over_zero_cluster();
	test_relative_base();
	test_locate_no_io();
	test_grant();
	test_grant_full();
	test_unused();
	test_l2_cache();
	test_grow();
	sh("rm -rf %s", dir);
	return check_done("test-qcow2");
}
