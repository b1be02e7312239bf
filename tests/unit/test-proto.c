// SPDX-License-Identifier: GPL-2.0-only
/* The control-device message codec: layout, builders, checks, HELLO. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "check.h"
#include "proto.h"

static void test_layout(void)
{
	TEST("layout");
	/* Fixed size and offsets: the kernel and daemon must agree exactly. */
	CHECK(sizeof(struct cow_msg) == 64, "size %zu", sizeof(struct cow_msg));
	CHECK(offsetof(struct cow_msg, version) == 0, "version");
	CHECK(offsetof(struct cow_msg, type) == 2, "type");
	CHECK(offsetof(struct cow_msg, flags) == 4, "flags");
	CHECK(offsetof(struct cow_msg, error) == 8, "error");
	CHECK(offsetof(struct cow_msg, seq) == 16, "seq");
	CHECK(offsetof(struct cow_msg, chunk) == 24, "chunk");
	CHECK(offsetof(struct cow_msg, sector) == 32, "sector");
	CHECK(offsetof(struct cow_msg, arg) == 40, "arg");
}

static void test_builders(void)
{
	struct cow_msg m;

	TEST("builders");
	m = cow_msg_map(7, 1234, 0);
	CHECK(m.version == COW_PROTO_VERSION && m.type == COW_MSG_MAP, "header");
	CHECK(m.chunk == 7 && m.sector == 1234 && m.flags == 0, "map fields");
	CHECK(m.reserved == 0 && m.error == 0 && m.seq == 0, "map zeroes the rest");
	m = cow_msg_map(7, 1234, 1);
	CHECK(m.flags == COW_MAP_DATA_VALID, "data valid flag");
	m = cow_msg_load(9, 4096);
	CHECK(m.type == COW_MSG_LOAD && m.chunk == 9 && m.sector == 4096, "load");
	m = cow_msg_fail(3, -ENOSPC);
	CHECK(m.type == COW_MSG_FAIL && m.error == -ENOSPC, "fail keeps a negative errno");
	m = cow_msg_fail(3, 5);
	CHECK(m.error == -EIO, "fail turns a bogus errno into -EIO");
	m = cow_msg_committed(77);
	CHECK(m.type == COW_MSG_COMMITTED && m.seq == 77, "committed");
	m = cow_msg_attach(24);
	CHECK(m.type == COW_MSG_ATTACH && m.arg[0] == 24, "attach phase");
	m = cow_msg_commit_failed(41, -EIO);
	CHECK(m.type == COW_MSG_COMMIT_FAILED && m.seq == 41 && m.error == -EIO,
	      "commit failed: the seq asked for and the errno");
	m = cow_msg_commit_failed(41, 0);
	CHECK(m.error == -EIO, "commit failed never says success");
}

static void test_incoming(void)
{
	struct cow_geometry g = { .nr_chunks = 100, .chunk_sectors = 128 };
	struct cow_msg m;
	const char *why = NULL;

	TEST("incoming");
	memset(&m, 0, sizeof(m));
	m.version = COW_PROTO_VERSION;
	m.type = COW_MSG_FAULT;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a FAULT is fine");
	m.version = COW_PROTO_VERSION + 1;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EPROTO, "wrong version");
	CHECK(why && strstr(why, "version"), "says why: %s", why ? why : "(null)");
	m.version = COW_PROTO_VERSION;
	m.type = COW_MSG_MAP;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "MAP never comes from the kernel");
	m.type = 0;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "type 0");
	m.type = COW_MSG_COPY_FAILED;
	m.sector = 8 + 3 * 128;
	m.error = -EIO;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a COPY_FAILED comes from the kernel");
	/* Flags the kernel adds later (COPY_BASE_ERROR came without a new
	 * version) must pass: the daemon ignores what it does not know. */
	m.flags = COW_COPY_BASE_ERROR | COW_READY_GRANTED | 0x80000000u;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a COPY_FAILED with flags, known or not");
	m.flags = 0;
	m.error = -2147483647 - 1;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a COPY_FAILED with error INT_MIN");
	m.error = 0;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a COPY_FAILED without an error");
	m.error = -EIO;
	m.type = COW_MSG_COMMIT_FAILED;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "COMMIT_FAILED never does");

	TEST("incoming: chunks and locations inside the geometry");
	m.type = COW_MSG_FAULT;
	m.chunk = 99;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "the last chunk");
	m.chunk = 100;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL && strstr(why, "chunk"),
	      "a FAULT past the last chunk");
	m.type = COW_MSG_READY;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a READY past the last chunk");
	m.chunk = 5;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a READY at an aligned location");
	m.sector = 9 + 3 * 128;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL && strstr(why, "aligned"),
	      "a READY off the data phase");
	m.sector = 0;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a READY before the data area");
	m.type = COW_MSG_FILLING;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a FILLING before the data area");
	m.sector = 8 + 3 * 128;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a FILLING at an aligned location");
	m.type = COW_MSG_COPY_FAILED;
	m.chunk = ~0ULL;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a COPY_FAILED of chunk 2^64-1");
	m.type = COW_MSG_COMMIT;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a COMMIT names no chunk");

	TEST("incoming: RESIZE");
	memset(&m, 0, sizeof(m));
	m.version = COW_PROTO_VERSION;
	m.type = COW_MSG_RESIZE;
	m.sector = 300 * 128 + 1;
	m.chunk = 301;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == 0, "a RESIZE past the device's chunks");
	m.chunk = 300;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "chunks not covering the size");
	m.sector = 0;
	m.chunk = 0;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a RESIZE to nothing");
	m.sector = COW_MAX_DEV_SECTORS + 128;
	m.chunk = m.sector / 128;
	CHECK(cow_msg_check_incoming(&m, &g, 8, &why) == -EINVAL, "a RESIZE past what dm-cow serves");
	m = cow_msg_resized(4096, -ENOSPC);
	CHECK(m.type == COW_MSG_RESIZED && m.sector == 4096 && m.error == -ENOSPC, "RESIZED");
}

static void test_hello(void)
{
	struct cow_msg m;
	struct cow_geometry g;

	TEST("hello");
	memset(&m, 0, sizeof(m));
	m.version = COW_PROTO_VERSION;
	m.type = COW_MSG_HELLO;
	m.arg[0] = 128;
	m.sector = 1000;			/* 7 full chunks and a partial one */
	m.chunk = 8;
	m.arg[1] = 5000;
	m.arg[2] = ((uint64_t)((7 << 8) | 3) << 32) | ((259 << 8) | 0x12);
	CHECK(cow_msg_hello_decode(&m, &g) == 0, "decodes");
	CHECK(g.chunk_sectors == 128 && g.nr_chunks == 8 && g.base_sectors == 1000, "geometry");
	CHECK(g.cow_sectors == 5000, "cow size");
	CHECK(cow_dev_major(g.base_dev) == 7 && cow_dev_minor(g.base_dev) == 3, "base dev");
	CHECK(cow_dev_major(g.cow_dev) == 259 && cow_dev_minor(g.cow_dev) == 0x12, "cow dev");
	m.chunk = 7;
	CHECK(cow_msg_hello_decode(&m, &g) == -EINVAL, "chunk count must cover the partial chunk");
	m.chunk = 20;
	CHECK(cow_msg_hello_decode(&m, &g) == 0 && g.nr_chunks == 20 && g.base_sectors == 1000,
	      "a device grown past its base");
	m.chunk = 8;
	m.arg[0] = 96;
	CHECK(cow_msg_hello_decode(&m, &g) == -EINVAL, "chunk not a power of two");
	m.arg[0] = 4;
	CHECK(cow_msg_hello_decode(&m, &g) == -EINVAL, "chunk below 8 sectors");
	m.arg[0] = 128;
	m.type = COW_MSG_FAULT;
	CHECK(cow_msg_hello_decode(&m, &g) == -EINVAL, "not a HELLO");
	/* Minor numbers above 255 use the split encoding. */
	CHECK(cow_dev_minor((0x12345 & 0xff) | (8 << 8) | ((0x12345 & ~0xffu) << 12)) == 0x12345,
	      "large minor");
}

static void test_describe(void)
{
	struct cow_msg m = cow_msg_map(5, 640, 0);
	char buf[160];

	TEST("describe");
	cow_msg_describe(&m, buf, sizeof(buf));
	CHECK(strstr(buf, "MAP") && strstr(buf, "chunk=5") && strstr(buf, "sector=640"), "%s", buf);
	CHECK(!strcmp(cow_msg_type_name(999), "UNKNOWN"), "unknown type name");
}

/*
 * An upgraded cowd serves the module loaded before the upgrade (protocol
 * 3) in its version, and none older; GRANT is the new version's.
 */
static void test_versions(void)
{
	struct cow_geometry g = { .nr_chunks = 100, .chunk_sectors = 8 };
	const char *why = NULL;
	struct cow_msg m;

	TEST("an older module is spoken to in its version");
	m = cow_msg_grant(64, 16);
	CHECK(m.type == COW_MSG_GRANT && m.sector == 64 && m.arg[0] == 16 &&
	      m.version == COW_PROTO_VERSION, "grant");
	CHECK(cow_msg_use_version(COW_PROTO_OLDEST - 1) == -EPROTO, "too old a module");
	CHECK(cow_msg_use_version(COW_PROTO_VERSION + 1) == -EPROTO, "a newer module");
	CHECK(cow_msg_use_version(COW_PROTO_OLDEST) == 0, "version 3");
	m = cow_msg_committed(5);
	CHECK(m.version == COW_PROTO_OLDEST, "answers in version 3: %u", m.version);
	memset(&m, 0, sizeof(m));
	m.type = COW_MSG_COMMIT;
	m.version = COW_PROTO_VERSION;
	CHECK(cow_msg_check_incoming(&m, &g, 0, &why) == -EPROTO, "a message of another version");
	m.version = COW_PROTO_OLDEST;
	CHECK(cow_msg_check_incoming(&m, &g, 0, &why) == 0, "one of version 3");
	CHECK(cow_msg_use_version(COW_PROTO_VERSION) == 0, "back to the current one");
}

int main(void)
{
	test_layout();
	test_builders();
	test_incoming();
	test_hello();
	test_describe();
	test_versions();
	return check_done("test-proto");
}
