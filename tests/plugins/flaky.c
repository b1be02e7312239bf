// SPDX-License-Identifier: GPL-2.0-only
/*
 * A store plugin for tests: another plugin (the shared object named by
 * $COW_FLAKY_PLUGIN) whose mark() fails for chunk $COW_FLAKY_MARK_CHUNK,
 * as a plugin whose metadata cannot take a mapping would.  Its name is
 * "flaky"; everything else is the wrapped plugin's.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cow-plugin.h"

static struct cow_plugin flaky;
static const struct cow_plugin *real;
static uint64_t fail_chunk = UINT64_MAX;

static int flaky_mark(struct cow_store *s, uint64_t chunk, uint64_t sector)
{
	if (chunk == fail_chunk) {
		snprintf(s->error, sizeof(s->error), "flaky: chunk %llu cannot be recorded",
			 (unsigned long long)chunk);
		return -EIO;
	}
	return real->mark(s, chunk, sector);
}

const struct cow_plugin *cow_plugin_init(void)
{
	const struct cow_plugin *(*init)(void);
	const char *path = getenv("COW_FLAKY_PLUGIN"), *chunk = getenv("COW_FLAKY_MARK_CHUNK");
	void *h = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;

	if (!h) {
		fprintf(stderr, "flaky: set COW_FLAKY_PLUGIN to a plugin (%s)\n", dlerror());
		return NULL;
	}
	*(void **)&init = dlsym(h, "cow_plugin_init");
	real = init ? init() : NULL;
	if (!real)
		return NULL;
	if (chunk)
		fail_chunk = strtoull(chunk, NULL, 0);
	flaky = *real;
	flaky.name = "flaky";
	flaky.description = "a wrapped plugin whose mark() fails for one chunk (tests)";
	flaky.mark = flaky_mark;
	return &flaky;
}
