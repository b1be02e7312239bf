// SPDX-License-Identifier: GPL-2.0-only
/*
 * Sweeps the slab allocations of a device-mapper table load: load number n
 * fails the n-th allocation the loading thread makes in the kernel
 * (/proc/thread-self/fail-nth, needs CONFIG_FAILSLAB and
 * /sys/kernel/debug/failslab/ignore-gfp-wait = N), for n = 1, 2, ... until
 * a load no longer reaches its n-th allocation.  Every constructor error
 * path of the cow target runs once; the kernel log and kmemleak judge them.
 *
 *   cow-failnth new NAME TABLE
 *       NAME is live with a table that is no cow table of TABLE's group:
 *       each round loads TABLE into NAME's inactive slot with the fault
 *       (a new group), then clears that slot; the group's control device
 *       must be gone after each round.
 *   cow-failnth join NAME TABLE
 *       the same, where NAME's live table is a cow table of the group: the
 *       load joins it, and the group must still be there after each round.
 *
 * Only steady-state loads are swept: a device's first table also sets up
 * its queue, and a failure there reaches leaks of the block layer's own
 * (6.1's kmem_cache_create() error path leaks a name), which are not ours.
 * TABLE is one line: START LENGTH TYPE PARAMS.  The device-mapper ioctls
 * are made directly, so that nothing but the load runs under the fault.
 * Prints the number of rounds; exits 1 on any inconsistency.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/dm-ioctl.h>

#include "dm-cow-proto.h"

#define MAX_ROUNDS 5000

static int control_fd = -1, nth_fd = -1;

union dm_buf {
	struct dm_ioctl io;
	char bytes[16384];
};

static void dm_init(union dm_buf *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->io.version[0] = DM_VERSION_MAJOR;
	b->io.version[1] = 0;
	b->io.version[2] = 0;
	b->io.data_size = sizeof(*b);
	b->io.data_start = sizeof(b->io);
	snprintf(b->io.name, sizeof(b->io.name), "%s", name);
}

static int dm_call(unsigned long cmd, union dm_buf *b)
{
	return ioctl(control_fd, cmd, b) ? -errno : 0;
}

static int dm_simple(unsigned long cmd, const char *name, unsigned int flags)
{
	union dm_buf b;

	dm_init(&b, name);
	b.io.flags = flags;
	return dm_call(cmd, &b);
}

/* Fill @b with a table load of one target, from "START LENGTH TYPE PARAMS". */
static int table_init(union dm_buf *b, const char *name, const char *line)
{
	struct dm_target_spec *spec;
	unsigned long long start, len;
	char type[DM_MAX_TYPE_NAME];
	int used = 0;
	size_t plen;

	dm_init(b, name);
	if (sscanf(line, "%llu %llu %15s %n", &start, &len, type, &used) != 3 || !used)
		return -EINVAL;
	spec = (struct dm_target_spec *)(b->bytes + b->io.data_start);
	spec->sector_start = start;
	spec->length = len;
	snprintf(spec->target_type, sizeof(spec->target_type), "%s", type);
	plen = strlen(line + used) + 1;
	if (sizeof(*b) - b->io.data_start - sizeof(*spec) < plen + 8)
		return -E2BIG;
	memcpy(spec + 1, line + used, plen);
	spec->next = 0;
	b->io.target_count = 1;
	return 0;
}

/* Arm the fault for this thread's n-th allocation; 0 disarms. */
static void fail_nth(unsigned int n)
{
	char s[16];
	int len = snprintf(s, sizeof(s), "%u", n);

	if (pwrite(nth_fd, s, (size_t)len, 0) != len) {
		perror("cow-failnth: /proc/thread-self/fail-nth");
		exit(2);
	}
}

/* Whether the armed fault was injected (fail-nth reads 0 once it was). */
static int fault_injected(void)
{
	char s[16] = "";

	if (pread(nth_fd, s, sizeof(s) - 1, 0) <= 0) {
		perror("cow-failnth: /proc/thread-self/fail-nth");
		exit(2);
	}
	return atoi(s) == 0;
}

/* The cow target's group ident: the TYPE "cow" line's first parameter. */
static void ctl_path(const char *line, char *path, size_t size)
{
	char type[32] = "", ident[COW_IDENT_MAX + 1] = "";

	path[0] = 0;
	if (sscanf(line, "%*s %*s %31s %64s", type, ident) == 2 && !strcmp(type, "cow"))
		snprintf(path, size, "%s/%s", COW_CTL_DIR, ident);
}

int main(int argc, char **argv)
{
	char ctl[128];
	union dm_buf b;
	unsigned int n;
	int join, r, loaded, injected, exists;
	struct stat st;

	if (argc != 4 || (strcmp(argv[1], "new") && strcmp(argv[1], "join"))) {
		fprintf(stderr, "usage: cow-failnth new|join NAME TABLE\n");
		return 2;
	}
	join = !strcmp(argv[1], "join");
	ctl_path(argv[3], ctl, sizeof(ctl));
	control_fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	if (control_fd < 0 || nth_fd < 0) {
		perror("cow-failnth: /dev/mapper/control or /proc/thread-self/fail-nth");
		return 2;
	}
	for (n = 1; n <= MAX_ROUNDS; n++) {
		if (table_init(&b, argv[2], argv[3])) {
			fprintf(stderr, "cow-failnth: cannot parse the table '%s'\n", argv[3]);
			return 2;
		}
		fail_nth(n);
		r = dm_call(DM_TABLE_LOAD, &b);
		injected = fault_injected();
		fail_nth(0);
		loaded = !r;
		if (!injected && !loaded) {
			fprintf(stderr, "round %u: the load failed without a fault: %s\n", n,
				strerror(-r));
			return 1;
		}
		if (loaded && (r = dm_simple(DM_TABLE_CLEAR, argv[2], 0))) {
			fprintf(stderr, "round %u: cannot clear the inactive table: %s\n", n,
				strerror(-r));
			return 1;
		}
		exists = ctl[0] && !stat(ctl, &st);
		if (ctl[0] && exists != join) {
			fprintf(stderr, "round %u: %s %s\n", n, ctl,
				join ? "went away" : "outlived its table");
			return 1;
		}
		if (!injected)
			break;
	}
	if (n > MAX_ROUNDS) {
		fprintf(stderr, "cow-failnth: still failing after %u allocations\n", MAX_ROUNDS);
		return 1;
	}
	printf("%u\n", n);
	return 0;
}
