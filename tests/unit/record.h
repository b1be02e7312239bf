/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Power cuts for host unit tests: every pwrite_full() and fdatasync() on
 * the recorded fd is logged (link with -Wl,--wrap=pwrite_full,--wrap=fdatasync),
 * and record_replay() makes the image a cut would leave, from a copy of
 * the file before the recording: all writes up to write k landed (a
 * prefix), or those of the synced steps before k's plus k alone (writes
 * between two syncs reach the disk in any order).
 */
#ifndef COW_TEST_RECORD_H
#define COW_TEST_RECORD_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cow-store.h"

struct rec {
	uint64_t off;
	size_t len;
	char *data;
	int epoch;	/* syncs before this write */
};

static struct rec *recs;
static size_t nrecs, maxrecs;
static int recording = -1, epoch;	/* the fd recorded, or -1 */

int __real_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int __wrap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

/* A write at this offset (of any fd) fails once with EIO, writing nothing. */
static uint64_t record_fail_off = UINT64_MAX;

int __wrap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	if (off == record_fail_off) {
		record_fail_off = UINT64_MAX;
		return -EIO;
	}
	if (fd == recording) {
		if (array_reserve(&recs, &maxrecs, nrecs, sizeof(*recs)))
			abort();
		recs[nrecs].data = malloc(len);
		if (!recs[nrecs].data)
			abort();
		memcpy(recs[nrecs].data, buf, len);
		recs[nrecs].off = off;
		recs[nrecs].len = len;
		recs[nrecs].epoch = epoch;
		nrecs++;
	}
	return __real_pwrite_full(fd, buf, len, off);
}

int __wrap_fdatasync(int fd)
{
	if (fd == recording)
		epoch++;
	return __real_fdatasync(fd);
}

static void record_start(int fd)
{
	recording = fd;
}

static void record_stop(void)
{
	recording = -1;
}

static void record_forget(void)
{
	while (nrecs)
		free(recs[--nrecs].data);
	free(recs);
	recs = NULL;
	maxrecs = 0;
	epoch = 0;
}

/* Write into @fd (a copy of the file before the recording) cut @k's writes. */
static inline void record_replay(int fd, size_t k, int prefix)
{
	size_t i;

	for (i = 0; i < nrecs && i <= k; i++) {
		if (!prefix && recs[i].epoch >= recs[k].epoch && i != k)
			continue;
		if (pwrite(fd, recs[i].data, recs[i].len, (off_t)recs[i].off) != (ssize_t)recs[i].len)
			abort();
	}
}

#endif
