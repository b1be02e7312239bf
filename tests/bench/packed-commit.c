// SPDX-License-Identifier: GPL-2.0-only
/*
 * How long a packed store's commits take while its map grows to a million
 * mappings, on this machine's disk: the median, the 99th percentile and
 * the longest commit, against the peer measured in the same run, writing
 * the whole map once and syncing it (what a commit cost whenever the
 * journal filled, before checkpoints were written a piece per commit).
 *
 *   packed-commit [MAPPINGS [PER_COMMIT [DIR]]]
 *
 * Defaults: 1048576 mappings, 255 per commit (one journal block), files
 * in build/bench.  The store is a sparse file of 4 KiB chunks; nothing
 * but metadata is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "packed-commit: %s: %s\n", what, why);
	exit(1);
}

int main(int argc, char **argv)
{
	uint64_t mappings = argc > 1 ? strtoull(argv[1], NULL, 0) : 1 << 20;
	uint64_t per = argc > 2 ? strtoull(argv[2], NULL, 0) : 255;
	const char *dir = argc > 3 ? argv[3] : "build/bench";
	const struct cow_plugin *P = cow_plugin_init();
	struct cow_store s = { 0 };
	char base[512], cow[512], *map_image;
	uint64_t chunk = 0, ncommits = (mappings + per - 1) / per, i, sector;
	double *t, whole, t0;
	int valid;

	if (!mappings || !per) {
		fprintf(stderr, "usage: packed-commit [MAPPINGS [PER_COMMIT [DIR]]]\n");
		return 2;
	}
	snprintf(base, sizeof(base), "%s/packed-commit.base", dir);
	snprintf(cow, sizeof(cow), "%s/packed-commit.cow", dir);
	s.base_fd = open(base, O_RDWR | O_CREAT | O_TRUNC, 0600);
	s.cow_fd = open(cow, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (s.base_fd < 0 || s.cow_fd < 0)
		die(dir, strerror(errno));
	s.base_size = 1 << 20;
	s.chunk_sectors = 8;
	/* Data slots for every mapping, metadata (two checkpoints) on top. */
	s.cow_size = mappings * 4096 + mappings * 40 + (64 << 20);
	if (ftruncate(s.base_fd, (off_t)s.base_size) || ftruncate(s.cow_fd, (off_t)s.cow_size))
		die(dir, strerror(errno));
	s.base_name = base;
	if (P->create(&s) || P->open(&s))
		die("create", s.error);

	t = calloc(ncommits, sizeof(*t));
	if (!t)
		die("memory", strerror(ENOMEM));
	for (i = 0; i < ncommits; i++) {
		uint64_t k;

		for (k = 0; k < per && chunk < mappings; k++, chunk++)
			if (P->locate(&s, chunk, &sector, &valid) || P->mark(&s, chunk, sector))
				die("mark", s.error);
		t0 = now_ms();
		if (P->commit(&s))
			die("commit", s.error);
		t[i] = now_ms() - t0;
	}
	P->close(&s);

	/* The peer: the whole map written at once and synced, as before. */
	map_image = calloc(1, mappings * 16 + 4096);
	if (!map_image)
		die("memory", strerror(ENOMEM));
	t0 = now_ms();
	if (pwrite_full(s.cow_fd, map_image, mappings * 16 + 4096, s.cow_size - (48 << 20) - mappings * 16) ||
	    fdatasync(s.cow_fd))
		die("write", strerror(errno));
	whole = now_ms() - t0;
	free(map_image);

	qsort(t, ncommits, sizeof(*t), cmp_double);
	printf("packed commits up to %llu mappings, %llu per commit (%llu commits)\n",
	       (unsigned long long)mappings, (unsigned long long)per, (unsigned long long)ncommits);
	printf("  median %.2f ms, p99 %.2f ms, longest %.2f ms\n", t[ncommits / 2],
	       t[ncommits * 99 / 100], t[ncommits - 1]);
	printf("  whole map written and synced at once: %.2f ms\n", whole);
	printf("  longest commit / whole-map write: %.2f\n", t[ncommits - 1] / whole);
	printf("{\"bench\":\"packed-commit\",\"mappings\":%llu,\"per_commit\":%llu,\"median_ms\":%.3f,"
	       "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"whole_map_ms\":%.3f}\n",
	       (unsigned long long)mappings, (unsigned long long)per, t[ncommits / 2],
	       t[ncommits * 99 / 100], t[ncommits - 1], whole);
	free(t);
	close(s.base_fd);
	close(s.cow_fd);
	unlink(base);
	unlink(cow);
	return 0;
}
