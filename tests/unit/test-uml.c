// SPDX-License-Identifier: GPL-2.0-only
/*
 * The UML COW plugin on regular files: the layout uml_mkcow writes, marks
 * and commits landing in the on-disk bitmap, reopening, completing partly
 * written chunks, partial last chunks, every refusal, and power cuts
 * while a COW file is made over a device that held other data.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "record.h"
#include "sh.h"
#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);
static const struct cow_plugin *P;
static char dir[] = "/tmp/test-uml.XXXXXX";

struct fixture {
	struct cow_store s;
	char base[256], cow[256];
};

/* A base of @size bytes whose sector N is filled with byte N & 0xff. */
static void setup(struct fixture *f, uint64_t size, uint32_t chunk_sectors, const char *name)
{
	char buf[512];
	uint64_t n;
	int fd;

	memset(f, 0, sizeof(*f));
	snprintf(f->base, sizeof(f->base), "%s/%s.base", dir, name);
	snprintf(f->cow, sizeof(f->cow), "%s/%s.cow", dir, name);
	fd = open(f->base, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (n = 0; n < size; n += 512) {
		memset(buf, (int)(n / 512) & 0xff, sizeof(buf));
		if (pwrite(fd, buf, size - n < 512 ? size - n : 512, (off_t)n) < 0)
			abort();
	}
	f->s.base_fd = fd;
	f->s.cow_fd = open(f->cow, O_RDWR | O_CREAT | O_TRUNC, 0600);
	f->s.base_size = size;
	f->s.cow_size = 0;
	f->s.cow_is_file = 1;
	f->s.chunk_sectors = chunk_sectors;
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
	struct stat st;

	P->close(&f->s);
	fstat(f->s.cow_fd, &st);
	f->s.cow_size = (uint64_t)st.st_size;
	return P->open(&f->s);
}

static int bit_on_disk(struct fixture *f, uint64_t sector)
{
	unsigned char byte = 0;

	if (pread(f->s.cow_fd, &byte, 1, (off_t)(8192 + sector / 8)) != 1)
		return -1;
	return (byte >> (sector % 8)) & 1;
}

static int collect(void *ctx, uint64_t chunk, uint64_t sector)
{
	uint64_t *list = ctx;

	list[++list[0]] = chunk;
	(void)sector;
	return 0;
}

static uint32_t be32at(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t be64at(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static void test_create_layout(void)
{
	struct fixture f;
	unsigned char h[4128];
	struct stat st;
	uint64_t sector;
	int valid = -1;

	TEST("create: the layout uml_mkcow writes");
	setup(&f, 10 << 20, 128, "layout");
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	CHECK(pread(f.s.cow_fd, h, sizeof(h), 0) == (ssize_t)sizeof(h), "read header");
	CHECK(be32at(h) == 0x4f4f4f4d, "magic");
	CHECK(be32at(h + 4) == 3, "version");
	CHECK(be64at(h + 12) == 10 << 20, "size");
	CHECK(be32at(h + 20) == 512, "sectorsize");
	CHECK(be32at(h + 24) == 4096, "alignment");
	CHECK(be32at(h + 28) == 0, "cow_format");
	CHECK(!strcmp((char *)h + 32, f.base), "backing file %s", (char *)h + 32);
	fstat(f.s.cow_fd, &st);
	/* uml_mkcow makes a 10 MiB base's COW file 10 MiB + 12288 bytes. */
	CHECK(st.st_size == (10 << 20) + 12288, "file size %lld", (long long)st.st_size);
	CHECK(P->probe(h, sizeof(h)) == 1, "probe recognises it");
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	CHECK(P->data_phase(&f.s) == (12288 / 512) % 128, "phase");
	CHECK(P->locate(&f.s, 3, &sector, &valid) == 0 && sector == 24 + 3 * 128 && valid == 0,
	      "locate: sector %llu valid %d", (unsigned long long)sector, valid);
	CHECK(P->locate(&f.s, 160, &sector, &valid) == -ERANGE, "locate beyond the end");
	teardown(&f);
}

static void test_mark_commit_reopen(void)
{
	struct fixture f;
	uint64_t list[16] = { 0 }, sector;
	int valid;

	TEST("mark, commit, reopen");
	setup(&f, 1 << 20, 64, "mark");
	CHECK(P->create(&f.s) == 0 && reopen(&f) == 0, "%s", f.s.error);
	P->locate(&f.s, 3, &sector, &valid);
	CHECK(P->mark(&f.s, 3, sector) == 0, "mark 3");
	P->locate(&f.s, 5, &sector, &valid);
	CHECK(P->mark(&f.s, 5, sector) == 0, "mark 5");
	CHECK(P->mark(&f.s, 5, sector) == 0, "marking twice is harmless");
	CHECK(P->mark(&f.s, 6, sector) == -EINVAL, "mark at the wrong place");
	CHECK(bit_on_disk(&f, 3 * 64) == 0, "nothing on disk before the commit");
	CHECK(P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(bit_on_disk(&f, 3 * 64) == 1 && bit_on_disk(&f, 3 * 64 + 63) == 1, "chunk 3 bits");
	CHECK(bit_on_disk(&f, 5 * 64) == 1 && bit_on_disk(&f, 6 * 64 - 1) == 1, "chunk 5 bits");
	CHECK(bit_on_disk(&f, 4 * 64) == 0 && bit_on_disk(&f, 3 * 64 - 1) == 0, "neighbours clear");
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	P->for_each_mapping(&f.s, collect, list);
	CHECK(list[0] == 2 && list[1] == 3 && list[2] == 5, "mappings after reopen: %llu",
	      (unsigned long long)list[0]);
	CHECK(P->locate(&f.s, 5, &sector, &valid) == 0 && valid == 1, "a committed chunk is valid");
	CHECK(P->used_bytes(&f.s) == 12288 + 2 * 64 * 512, "used bytes %llu",
	      (unsigned long long)P->used_bytes(&f.s));
	teardown(&f);
}

static void test_partial_chunk_completed(void)
{
	struct fixture f;
	unsigned char bits = 0x0f, buf[512];
	uint64_t data_off, s, list[8] = { 0 };
	int ok = 1;

	TEST("a chunk UML left partly written is completed from the base");
	setup(&f, 1 << 20, 64, "partial");
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	/* 1 MiB: bitmap 256 bytes at 8192, data at 12288. */
	data_off = 12288;
	CHECK(pwrite(f.s.cow_fd, &bits, 1, 8192 + 7 * 64 / 8) == 1, "set bits");
	memset(buf, 0xee, sizeof(buf));
	for (s = 7 * 64; s < 7 * 64 + 4; s++)
		CHECK(pwrite(f.s.cow_fd, buf, 512, (off_t)(data_off + s * 512)) == 512, "data");
	CHECK(reopen(&f) == 0, "%s", f.s.error);
	P->for_each_mapping(&f.s, collect, list);
	CHECK(list[0] == 1 && list[1] == 7, "chunk 7 is mapped");
	for (s = 7 * 64; s < 8 * 64; s++) {
		if (pread(f.s.cow_fd, buf, 512, (off_t)(data_off + s * 512)) != 512)
			ok = 0;
		else if (s < 7 * 64 + 4 ? buf[0] != 0xee : buf[0] != (s & 0xff))
			ok = 0;
		if (bit_on_disk(&f, s) != 1)
			ok = 0;
	}
	CHECK(ok, "UML's sectors kept, the rest copied from the base, all bits set");
	teardown(&f);
}

static void test_partial_last_chunk(void)
{
	struct fixture f;
	uint64_t sector;
	int valid;

	TEST("partial last chunk");
	/* 1000 sectors + 100 bytes: 8 chunks of 128, the last one short. */
	setup(&f, 1000 * 512 + 100, 128, "last");
	CHECK(P->create(&f.s) == 0 && reopen(&f) == 0, "%s", f.s.error);
	CHECK(P->locate(&f.s, 7, &sector, &valid) == 0, "last chunk locates");
	CHECK(P->locate(&f.s, 8, &sector, &valid) == -ERANGE, "no chunk 8");
	P->locate(&f.s, 7, &sector, &valid);
	CHECK(P->mark(&f.s, 7, sector) == 0 && P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(bit_on_disk(&f, 1000) == 1, "the partial sector's bit");
	CHECK(bit_on_disk(&f, 999) == 1 && bit_on_disk(&f, 896) == 1, "chunk 7's bits");
	CHECK(bit_on_disk(&f, 895) == 0, "chunk 6 untouched");
	teardown(&f);
}

static void test_big_chunks(void)
{
	struct fixture f;
	uint64_t sector;
	int valid;

	TEST("chunks whose bits span several bitmap blocks");
	setup(&f, 64 << 20, 65536, "big");
	CHECK(P->create(&f.s) == 0 && reopen(&f) == 0, "%s", f.s.error);
	P->locate(&f.s, 1, &sector, &valid);
	CHECK(P->mark(&f.s, 1, sector) == 0 && P->commit(&f.s) == 0, "%s", f.s.error);
	CHECK(bit_on_disk(&f, 65536) == 1 && bit_on_disk(&f, 131071) == 1, "all of chunk 1");
	CHECK(bit_on_disk(&f, 65535) == 0, "chunk 0 untouched");
	teardown(&f);
}

static void corrupt(struct fixture *f, off_t off, uint32_t value_be)
{
	uint32_t v = htobe32(value_be);

	if (pwrite(f->s.cow_fd, &v, 4, off) != 4)
		abort();
}

static void test_refusals(void)
{
	struct fixture f;
	unsigned char zeros[4096] = { 0 };

	TEST("refusals");
	setup(&f, 1 << 20, 64, "refuse");
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	f.s.base_size = 2 << 20;
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "but the base has"),
	      "another base size: %s", f.s.error);
	f.s.base_size = 1 << 20;
	/* As UML: a base file changed after the COW file was made. */
	CHECK(sh("touch -d 2001-01-01 %s", f.base) == 0, "touch the base");
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "modified after") &&
	      strstr(f.s.error, "--ignore-base-mtime"), "a base modified since: %s", f.s.error);
	f.s.ignore_base_mtime = 1;
	CHECK(reopen(&f) == 0, "--ignore-base-mtime: %s", f.s.error);
	f.s.ignore_base_mtime = 0;
	CHECK(P->create(&f.s) == 0, "%s", f.s.error);
	corrupt(&f, 4, 2);
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "version 2"), "v2: %s", f.s.error);
	corrupt(&f, 4, 3);
	corrupt(&f, 20, 4096);
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "sector size"), "sectorsize: %s", f.s.error);
	corrupt(&f, 20, 512);
	corrupt(&f, 24, 0);
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "alignment"), "alignment 0: %s", f.s.error);
	corrupt(&f, 24, 4096);
	corrupt(&f, 28, 1);
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "format"), "cow_format: %s", f.s.error);
	corrupt(&f, 28, 0);
	CHECK(reopen(&f) == 0, "restored header opens: %s", f.s.error);
	corrupt(&f, 0, 0x12345678);
	CHECK(reopen(&f) == -EINVAL && strstr(f.s.error, "magic"), "magic: %s", f.s.error);
	CHECK(P->probe(zeros, sizeof(zeros)) == 0, "zeros are not a UML file");
	teardown(&f);

	setup(&f, 1 << 20, 64, "small");
	f.s.cow_is_file = 0;
	f.s.cow_size = 4096;
	CHECK(P->create(&f.s) == -ENOSPC && strstr(f.s.error, "too small"), "small device: %s",
	      f.s.error);
	f.s.cow_is_file = 1;
	teardown(&f);
}

static int count_mapping(void *ctx, uint64_t chunk, uint64_t sector)
{
	(*(int *)ctx)++;
	return 0;
}

/*
 * A COW file made over a device full of old data (0xff): a power cut at
 * any write of create() leaves either no UML header (the device is still
 * not a store) or a header over a bitmap that is all zeros, never a header
 * over old bytes that would read as mapped chunks.
 */
static void test_create_power_cut(void)
{
	struct fixture f;
	char before[300], cut[300];
	unsigned char ff[65536];
	struct cow_store c;
	size_t k, bad = 0;
	int prefix, fd, n, r;

	TEST("power cuts during create");
	setup(&f, 4 << 20, 128, "pc");
	memset(ff, 0xff, sizeof(ff));
	for (k = 0; k < 4; k++)
		if (pwrite(f.s.cow_fd, ff, sizeof(ff), (off_t)(k * sizeof(ff))) != sizeof(ff))
			abort();
	snprintf(before, sizeof(before), "%s.before", f.cow);
	snprintf(cut, sizeof(cut), "%s.cut", f.cow);
	CHECK(sh("cp %s %s", f.cow, before) == 0, "cp");
	record_start(f.s.cow_fd);
	r = P->create(&f.s);
	record_stop();
	CHECK(r == 0, "create: %s", f.s.error);
	CHECK(nrecs >= 2, "only %zu writes recorded", nrecs);
	for (k = 0; k < nrecs; k++) {
		for (prefix = 1; prefix >= 0; prefix--) {
			CHECK(sh("cp %s %s", before, cut) == 0, "cp");
			fd = open(cut, O_RDWR);
			record_replay(fd, k, prefix);
			c = f.s;
			c.cow_fd = fd;
			c.priv = NULL;
			c.read_only = 1;
			c.cow_size = (uint64_t)lseek(fd, 0, SEEK_END);
			n = 0;
			if (P->open(&c) == 0) {
				P->for_each_mapping(&c, count_mapping, &n);
				P->close(&c);
			}
			if (n) {
				if (!bad)
					fprintf(stderr, "cut at write %zu of %zu (%s): %d chunks read as mapped\n",
						k, nrecs, prefix ? "prefix" : "alone", n);
				bad++;
			}
			close(fd);
		}
	}
	CHECK(bad == 0, "%zu cut images show old bytes as mapped chunks", bad);
	unlink(before);
	unlink(cut);
	record_forget();
	teardown(&f);
}

/*
 * cowctl merge reads a COW file read-only and takes what its bitmap says,
 * sector by sector: a partly written chunk gives its written sectors and
 * the base's others, as uml_moo merges it, and the COW file stays as it
 * was (a read-write open would complete the chunk).
 */
static void test_merge_partial(void)
{
	char cowctl[4096], plugins[4096];
	struct fixture f;
	unsigned char bits[2] = { 0x0f, 0xf0 }, buf[512];
	uint64_t s;
	int ok = 1;

	TEST("cowctl merge of a partly written chunk equals uml_moo's, source unchanged");
	if (!realpath("build/bin/cowctl", cowctl) || !realpath("build/plugins", plugins)) {
		CHECK(0, "build/bin/cowctl and build/plugins are needed (make all)");
		return;
	}
	setup(&f, 1 << 20, 64, "moo");
	close(f.s.cow_fd);
	unlink(f.cow);
	CHECK(sh("uml_mkcow -f %s %s >/dev/null", f.cow, f.base) == 0, "uml_mkcow");
	f.s.cow_fd = open(f.cow, O_RDWR);
	/* Sectors 448-451 and 460-463 (chunk 7 of 64 sectors), 1000-1007. */
	CHECK(pwrite(f.s.cow_fd, bits, 2, 8192 + 448 / 8) == 2, "bits");
	CHECK(pwrite(f.s.cow_fd, "\xff", 1, 8192 + 1000 / 8) == 1, "bits");
	memset(buf, 0xee, sizeof(buf));
	for (s = 0; s < 2048; s++)
		if (((s >= 448 && s < 452) || (s >= 460 && s < 464) || (s >= 1000 && s < 1008)) &&
		    pwrite(f.s.cow_fd, buf, 512, (off_t)(12288 + s * 512)) != 512)
			ok = 0;
	CHECK(ok, "data");
	fsync(f.s.cow_fd);
	CHECK(sh("cd %s && sha256sum moo.cow >moo.sum && uml_moo -b moo.base moo.cow moo-merged.img >/dev/null",
		 dir) == 0, "uml_moo");
	CHECK(sh("cd %s && COWD_PLUGIN_DIR=%s %s merge moo.cow moo.base --out ours.img >/dev/null", dir,
		 plugins, cowctl) == 0, "cowctl merge");
	CHECK(sh("cmp -s %s/ours.img %s/moo-merged.img", dir, dir) == 0, "the merge equals uml_moo's");
	CHECK(sh("cd %s && sha256sum -c --quiet moo.sum", dir) == 0, "the COW file did not change");
	sh("cd %s && rm -f moo.sum moo-merged.img ours.img", dir);
	teardown(&f);
}

int main(void)
{
	P = cow_plugin_init();
	if (!mkdtemp(dir))
		return 2;
	CHECK(P->api_version == COW_PLUGIN_API_VERSION && !strcmp(P->name, "uml"), "registration");
	test_create_layout();
	test_mark_commit_reopen();
	test_partial_chunk_completed();
	test_partial_last_chunk();
	test_big_chunks();
	test_refusals();
	test_create_power_cut();
	test_merge_partial();
	rmdir(dir);
	return check_done("test-uml");
}
