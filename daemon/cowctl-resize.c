// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowctl resize NAME SIZE: grow a device online.  The kernel is asked
 * (dmsetup message NAME 0 resize SECTORS) and passes the request to cowd,
 * which grows its store, durably, and then loads a table of the new size;
 * this waits for one or the other outcome.  Past the base's end the device
 * reads as zeros until written, as a qcow2 overlay larger than its backing
 * file does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cowctl-resize.h"
#include "dm-cow-proto.h"
#include "dmdev.h"
#include "log.h"
#include "run-status.h"

#define RESIZE_WAIT_S 600	/* only for a daemon that hangs: growing is quick */

struct resize_status {
	unsigned long long resizes, sectors;
	int error, pid, found;
};

/* What cowd says of resizes in RUN_DIR/IDENT.status. */
static void read_resize_status(const char *ident, struct resize_status *st)
{
	static const struct kv_field fields[] = {
		KV(KV_U64, struct resize_status, resizes, "resizes"),
		KV(KV_U64, struct resize_status, sectors, "resize_sectors"),
		KV(KV_INT, struct resize_status, error, "resize_error"),
		KV(KV_INT, struct resize_status, pid, "pid"),
	};

	memset(st, 0, sizeof(*st));
	st->found = run_status_read(ident, fields, sizeof(fields) / sizeof(fields[0]), st);
}

static int daemon_attached(const char *name)
{
	char status[1024];

	return !dmdev_target_params(name, 0, "cow", status, sizeof(status)) &&
	       strstr(status, "daemon=attached");
}

int cmd_resize(const struct cowctl_args *a)
{
	unsigned long long want, now;
	struct resize_status before, st;
	char table[512], ident[80], msg[64];
	uint64_t sectors;
	struct timespec tick = { 0, 50 * 1000 * 1000 };
	int i;

	if (dmdev_target_params(a->name, 1, "cow", table, sizeof(table)) ||
	    sscanf(table, "%79s", ident) != 1) {
		log_err("%s: no dm-cow device of that name", a->name);
		return 1;
	}
	if (dmdev_sectors(a->name, &sectors) || !sectors) {
		log_err("%s: cannot read the device's size", a->name);
		return 1;
	}
	now = sectors;
	want = (a->size_relative ? now * 512 : 0) + a->size_bytes;
	if (want < a->size_bytes || want / 512 > COW_MAX_DEV_SECTORS) {
		log_err("%s: dm-cow devices hold at most %llu bytes", a->name,
			COW_MAX_DEV_SECTORS * 512);
		return 1;
	}
	if (want / 512 < now) {
		log_err("%s: the device has %llu bytes; dm-cow devices grow, never shrink", a->name,
			now * 512);
		return 1;
	}
	if (want / 512 == now) {
		printf("%s: already %llu bytes\n", a->name, want);
		return 0;
	}
	if (!daemon_attached(a->name)) {
		log_err("%s: no cowd serves it; start it (cowd %s, or systemctl start cowd@%s) and "
			"resize again", a->name, ident, a->name);
		return 1;
	}
	read_resize_status(ident, &before);
	snprintf(msg, sizeof(msg), "resize %llu", want / 512);
	if (dmdev_message(a->name, msg)) {
		log_err("%s: the kernel refused the resize (see dmesg): is the module older than "
			"cowctl?", a->name);
		return 1;
	}
	for (i = 0; i < RESIZE_WAIT_S * 20; i++) {
		read_resize_status(ident, &st);
		/* Its answer to this request: of a new cowd, or a new one of this. */
		if (st.sectors == want / 512 && (st.pid != before.pid || st.resizes > before.resizes) &&
		    st.error) {
			log_err("%s: cowd could not grow the device: %s (its log says more)", a->name,
				strerror(st.error));
			return 1;
		}
		if (!dmdev_sectors(a->name, &sectors) && sectors >= want / 512) {
			printf("%s: grown from %llu to %llu bytes; grow the filesystem on it now "
			       "(resize2fs /dev/mapper/%s, xfs_growfs MOUNTPOINT)\n", a->name,
			       now * 512, want, a->name);
			return 0;
		}
		if (!daemon_attached(a->name)) {
			log_err("%s: cowd went away; the resize goes on when a cowd serves it again",
				a->name);
			return 1;
		}
		nanosleep(&tick, NULL);
	}
	log_err("%s: cowd did not grow the device in %d s; see its log", a->name, RESIZE_WAIT_S);
	return 1;
}
