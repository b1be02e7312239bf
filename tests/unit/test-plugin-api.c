// SPDX-License-Identifier: GPL-2.0-only
/*
 * The plugin API as a product: the example plugin of dm-cow-plugin(3),
 * extracted from the manual page and built as a shared object, is loaded
 * from a directory by cowd's loader, makes a blank store, maps chunks,
 * commits, and finds them again after a reopen.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "plugin-loader.h"
#include "cow-store.h"

struct seen {
	uint64_t n, last_chunk, last_sector;
};

static int collect(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct seen *s = ctx;

	s->n++;
	s->last_chunk = chunk;
	s->last_sector = sector;
	return 0;
}

/* A 1 MiB base and a blank store file, both temporary. */
static void temp_store(struct cow_store *s, char *base, char *cow)
{
	s->base_fd = mkstemp(base);
	s->cow_fd = mkstemp(cow);
	CHECK(s->base_fd >= 0 && s->cow_fd >= 0 && ftruncate(s->base_fd, 1 << 20) == 0, "temp files");
	s->base_size = 1 << 20;
	s->chunk_sectors = 128;
	s->cow_is_file = 1;
	s->base_name = base;
}

/*
 * --base-id: packed records the label at create; store_open() refuses a
 * store whose label differs, or which has none (qcow2 records none).
 */
static void test_base_label(const char *dir)
{
	char base[] = "/tmp/test-plugin-api.base.XXXXXX", cow[] = "/tmp/test-plugin-api.cow.XXXXXX";
	struct cow_store s = { 0 };
	const struct cow_plugin *p = NULL;
	struct plugin_set set;
	int created = 0;

	TEST("a base label: recorded by packed, checked when the store is opened");
	CHECK(plugins_load(&set, dir) >= 3, "the plugins in %s", dir);
	temp_store(&s, base, cow);
	s.base_id = "gold-1";
	CHECK(store_open(&set, &s, "packed", &p, &created) == 0 && created,
	      "a labelled packed store is made: %s", s.error);
	if (p)
		p->close(&s);
	s.cow_size = (uint64_t)lseek(s.cow_fd, 0, SEEK_END);
	s.base_id = "gold-2";
	CHECK(store_open(&set, &s, NULL, &p, &created) == -EINVAL && strstr(s.error, "'gold-1'"),
	      "another label is refused: %s", s.error);
	s.base_id = NULL;
	CHECK(store_open(&set, &s, NULL, &p, &created) == 0, "no label asked for: %s", s.error);
	if (p)
		p->close(&s);
	s.base_id = "gold-1";
	CHECK(store_open(&set, &s, NULL, &p, &created) == 0, "the same label: %s", s.error);
	if (p)
		p->close(&s);
	CHECK(ftruncate(s.cow_fd, 0) == 0, "blank the store");
	s.cow_size = 0;
	CHECK(store_open(&set, &s, "qcow2", &p, &created) == -EINVAL &&
	      strstr(s.error, "no base label"), "qcow2 records none: %s", s.error);
	plugins_unload(&set);
	close(s.base_fd);
	close(s.cow_fd);
	unlink(base);
	unlink(cow);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "build/example";
	char base[] = "/tmp/test-plugin-api.base.XXXXXX", cow[] = "/tmp/test-plugin-api.cow.XXXXXX";
	struct cow_store s = { 0 };
	const struct cow_plugin *p = NULL;
	struct plugin_set set;
	struct seen seen = { 0 };
	uint64_t sector = 0;
	int created = 0, valid = 1;

	TEST("the manual's example plugin");
	CHECK(plugins_load(&set, dir) == 1, "one plugin in %s", dir);
	CHECK(plugins_find(&set, "flat") != NULL, "it is called flat");
	temp_store(&s, base, cow);
	CHECK(store_open(&set, &s, "flat", &p, &created) == 0 && created && p,
	      "a blank store is made and opened: %s", s.error);
	if (p) {
		CHECK(p->locate(&s, 5, &sector, &valid) == 0 && !valid, "locate");
		CHECK(sector % 128 == p->data_phase(&s), "in phase");
		CHECK(p->mark(&s, 5, sector) == 0 && p->commit(&s) == 0, "mark and commit");
		p->close(&s);
		s.cow_size = (uint64_t)lseek(s.cow_fd, 0, SEEK_END);
		p = NULL;
		CHECK(store_open(&set, &s, NULL, &p, &created) == 0 && !created,
		      "reopened by probing: %s", s.error);
	}
	if (p) {
		CHECK(p->for_each_mapping(&s, collect, &seen) == 0 && seen.n == 1 &&
		      seen.last_chunk == 5 && seen.last_sector == sector, "the mapping survives");
		CHECK(!COW_PLUGIN_HAS(p, check) && !COW_PLUGIN_HAS(p, inspect),
		      "optional callbacks it lacks are seen as absent");
		p->close(&s);
	}
	s.base_size = 2 << 20;
	CHECK(store_open(&set, &s, NULL, &p, &created) == -EINVAL && strstr(s.error, "flat store for"),
	      "another base is refused with the plugin's words: %s", s.error);
	s.base_size = 1 << 20;
	s.base_id = "gold-1";
	CHECK(store_open(&set, &s, NULL, &p, &created) == -EINVAL && strstr(s.error, "no base label"),
	      "a plugin without inspect() cannot check a label: %s", s.error);
	plugins_unload(&set);
	close(s.base_fd);
	close(s.cow_fd);
	unlink(base);
	unlink(cow);
	test_base_label(argc > 2 ? argv[2] : "build/plugins");
	return check_done("test-plugin-api");
}
