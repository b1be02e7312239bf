// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowd's event loop: one control device, one plugin, one commit timer.
 *
 * Commit rule (the contract with the kernel): a COMMITTED(seq) is sent only
 * after (1) the CoW device was flushed, so the data of every READY chunk is
 * durable, and (2) the plugin wrote and flushed the metadata recording every
 * READY with sequence <= seq.  Many READYs, one metadata write.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "image-lock.h"
#include "blkdev.h"
#include "reload.h"
#include "dmdev.h"
#include "log.h"
#include "server.h"
#include "store-lock.h"
#include "cow-store.h"

#define READ_BATCH 256

static void maybe_reload(struct cowd *d, int force);
static void stop(struct cowd *d, int code);

/* Fail the writes waiting for @chunk: tell the kernel, say so if it refuses. */
static void fail_chunk(struct cowd *d, uint64_t chunk)
{
	struct cow_msg m = cow_msg_fail(chunk, -EIO);

	if (write(d->ctl_fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		log_err("%s: the kernel refused to fail chunk %llu: %s", d->ident,
			(unsigned long long)chunk, strerror(errno));
}

/*
 * How long what found no memory (a message to the kernel, the host space
 * of a chunk) is tried again: memory short for a moment must not fail a
 * guest's writes, nor hold them for ever.  Backoff from 1 ms doubling to
 * 100 ms, about 3 s in all.
 */
#define NOMEM_TRIES 36

static void nomem_backoff(unsigned int tries)
{
	usleep(tries < 7 ? 1000u << tries : 100000u);
}

/*
 * A location for @chunk from the plugin, with its host blocks allocated
 * when data must be copied there (see space.h).  0 or a negative errno,
 * said in the log.
 */
static int place_chunk(struct cowd *d, uint64_t chunk, uint64_t *sector, int *valid)
{
	uint64_t len = (uint64_t)d->geo.chunk_sectors * COW_SECTOR;
	unsigned int tries;
	int r;

	r = d->plugin->locate(&d->store, chunk, sector, valid);
	if (r) {
		log_err("%s: no place for chunk %llu: %s", d->ident, (unsigned long long)chunk,
			d->store.error);
		return r;
	}
	if (*valid)
		return 0;
	r = space_allocate(&d->space, *sector * COW_SECTOR, len);
	for (tries = 0; (r == -ENOMEM || r == -EINTR) && tries < NOMEM_TRIES; tries++) {
		nomem_backoff(tries);
		r = space_allocate(&d->space, *sector * COW_SECTOR, len);
	}
	if (r)
		log_err("%s: cannot allocate chunk %llu's space in %s: %s; its writes fail",
			d->ident, (unsigned long long)chunk, d->space.path, strerror(-r));
	return r;
}

/*
 * The kernel refused a MAP because another chunk's copy, answered by an
 * earlier daemon, holds that location: ask the plugin for another one.
 */
static void retry_map(struct cowd *d, uint64_t chunk)
{
	struct cow_msg m;
	uint64_t sector, last = UINT64_MAX;
	int tries, valid = 0;

	for (tries = 0; tries < 64; tries++) {
		if (place_chunk(d, chunk, &sector, &valid) || sector == last)
			break;
		last = sector;
		m = cow_msg_map(chunk, sector, valid);
		if (write(d->ctl_fd, &m, sizeof(m)) == (ssize_t)sizeof(m))
			return;
		if (errno != EEXIST)
			break;
	}
	log_err("%s: no free location for chunk %llu; failing its writes", d->ident,
		(unsigned long long)chunk);
	fail_chunk(d, chunk);
}

/*
 * The kernel had no memory for msgs[i], tries after tries.  A MAP fails its
 * chunk's writes (the guest sees EIO, not a hang); a LOAD left out would
 * serve the chunk from the base, so it stops the caller; anything else is
 * reported and skipped.
 */
static int nomem_give_up(struct cowd *d, const struct cow_msg *m)
{
	char desc[160];

	cow_msg_describe(m, desc, sizeof(desc));
	if (m->type == COW_MSG_LOAD) {
		log_err("%s: the kernel has no memory for %s; giving up", d->ident, desc);
		return -ENOMEM;
	}
	if (m->type != COW_MSG_MAP) {
		log_err("%s: the kernel has no memory for %s", d->ident, desc);
		if (m->type == COW_MSG_RESIZED) {
			d->nr_refused++;	/* the device does not grow */
			d->refused_errno = ENOMEM;
		}
		return 0;
	}
	log_err("%s: the kernel has no memory for %s; failing the chunk's writes", d->ident, desc);
	fail_chunk(d, m->chunk);
	return 0;
}

static int ctl_send(struct cowd *d, const struct cow_msg *msgs, size_t n, int quiet_busy)
{
	unsigned int nomem = 0;
	size_t i = 0;
	int r;

	while (i < n) {
		ssize_t w = write(d->ctl_fd, msgs + i, (n - i) * sizeof(*msgs));
		char desc[160];

		if (w > 0) {
			i += (size_t)w / sizeof(*msgs);
			nomem = 0;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == ENODEV)
			return -ENODEV;
		if (w < 0 && errno == ENOMEM) {
			if (nomem < NOMEM_TRIES) {
				nomem_backoff(nomem++);
				continue;
			}
			r = nomem_give_up(d, &msgs[i]);
			if (r)
				return r;
			nomem = 0;
			i++;
			continue;
		}
		if (w < 0 && errno == EEXIST && msgs[i].type == COW_MSG_MAP && d->plugin) {
			retry_map(d, msgs[i].chunk);
			i++;
			continue;
		}
		/* The kernel refused msgs[i]: say so and go on with the rest. */
		d->nr_refused++;
		d->refused_errno = errno;
		if (!(quiet_busy && errno == EBUSY)) {
			cow_msg_describe(&msgs[i], desc, sizeof(desc));
			log_warn("%s: kernel refused %s: %s", d->ident, desc, strerror(errno));
		}
		i++;
	}
	return 0;
}

static int queue_answer(struct cowd *d, struct cow_msg m)
{
	if (array_reserve(&d->out, &d->maxout, d->nout, sizeof(*d->out)))
		return -ENOMEM;
	d->out[d->nout++] = m;
	return 0;
}

static int flush_answers(struct cowd *d)
{
	int r = ctl_send(d, d->out, d->nout, 0);

	d->nout = 0;
	return r;
}

static void write_status(struct cowd *d);

/*
 * Try again to record the chunks mark() refused: their data is in place
 * and the kernel maps them, so no commit may claim their READYs before
 * they are recorded.  0 once none is left.
 */
static int record_again(struct cowd *d)
{
	size_t i, kept = 0;

	for (i = 0; i < d->nunrecorded; i++) {
		const struct mapping *u = &d->unrecorded[i];

		if (d->plugin->mark(&d->store, u->chunk, u->sector))
			d->unrecorded[kept++] = *u;
		else
			d->dirty = 1;
	}
	d->nunrecorded = kept;
	return kept ? -EIO : 0;
}

/*
 * Make every READY seen so far durable; see the commit rule above.  A
 * commit the kernel @asked for and that fails is answered with
 * COMMIT_FAILED: the kernel fails the flushes that waited for it, and cowd
 * goes on serving; the next flush asks for a new commit, which tries again.
 *
 * Except after a failed sync, of cowd's own or in the plugin's commit:
 * Linux drops the pages a failed sync could not write and reports the
 * error once, so what the store holds on disk is then unknown, and a
 * commit built on what the plugin holds in memory could point at metadata
 * that never reached the disk.  As qemu does, every later commit fails
 * until cowd is restarted; the new cowd reads the store from the device
 * (see drop_cached_store()) and the kernel replays every mapping to it.
 * Returns 0, or a negative errno if the answer could not be queued.
 */
static int commit(struct cowd *d, int asked)
{
	char unrecorded[160];
	const char *why = NULL;
	int r = 0;

	if (d->sync_lost) {
		r = -EIO;
		why = "an earlier sync of the CoW device failed";
	} else if (d->nunrecorded && record_again(d)) {
		r = -EIO;
		snprintf(unrecorded, sizeof(unrecorded),
			 "%zu chunks the store could not record, chunk %llu first: %s",
			 d->nunrecorded, (unsigned long long)d->unrecorded[0].chunk,
			 d->store.error);
		why = unrecorded;
	} else if (d->dirty) {
		if (fdatasync(d->store.cow_fd) < 0) {
			r = -errno;
			why = strerror(errno);
		} else {
			r = d->plugin->commit(&d->store);
			why = d->store.error;
		}
		/* Only running out of memory comes before any write. */
		d->sync_lost = r && r != -ENOMEM;
	}
	if (r) {
		d->nr_commit_errors++;
		if (!d->store_failing)
			log_err("%s: cannot commit the store (%s): flushes fail with EIO until %s; "
				"check it and the kernel log", d->ident,
				why && *why ? why : strerror(-r),
				d->sync_lost ? "cowd is restarted, once the CoW device works (after a "
					       "failed write or sync, only a new cowd can know what "
					       "reached the device)" :
					       "the CoW device works again");
		d->store_failing = 1;
		write_status(d);
		return asked ? queue_answer(d, cow_msg_commit_failed(d->ready_seen, r)) : 0;
	}
	if (d->dirty) {
		d->dirty = 0;
		d->nr_commits++;
	}
	if (d->store_failing) {
		log_info("%s: the store commits again", d->ident);
		d->store_failing = 0;
		write_status(d);
	}
	d->committed = d->ready_seen;
	return queue_answer(d, cow_msg_committed(d->committed));
}

/* The kernel could not fill a chunk's location: the chunk stays unmapped. */
/*
 * The kernel used a granted location (READY or COPY_FAILED with the flag);
 * also our predecessor's: a little over-granting, then ENOSPC.
 */
static void grant_used(struct cowd *d, const struct cow_msg *m)
{
	if (m->flags & COW_READY_GRANTED) {
		d->granted -= !!d->granted;
		d->grant_wait = 0;
	}
}

static void handle_copy_failed(struct cowd *d, const struct cow_msg *m)
{
	const char *why = strerror(m->error < 0 ? -m->error : EIO);

	grant_used(d, m);
	d->nr_copy_errors++;
	if (m->flags & COW_COPY_BASE_ERROR)
		log_err("%s: the kernel could not read chunk %llu from the base (%s) to copy "
			"it; its writes failed; check the base device", d->ident,
			(unsigned long long)m->chunk, why);
	else
		log_err("%s: the kernel could not copy chunk %llu to CoW sector %llu (%s); "
			"its writes failed; check the CoW device", d->ident,
			(unsigned long long)m->chunk, (unsigned long long)m->sector, why);
	write_status(d);
}

/*
 * A copy an earlier cowd answered is still filling m->sector: the plugin
 * must not give that location out again, nor put its metadata there.
 */
static int handle_filling(struct cowd *d, const struct cow_msg *m)
{
	int r;

	if (!COW_PLUGIN_HAS(d->plugin, hold))
		return 0;
	r = d->plugin->hold(&d->store, m->chunk, m->sector);
	if (r)
		log_err("%s: cannot hold CoW sector %llu for chunk %llu, whose copy is in flight: %s",
			d->ident, (unsigned long long)m->sector, (unsigned long long)m->chunk,
			d->store.error[0] ? d->store.error : strerror(-r));
	return r;
}

static int handle_fault(struct cowd *d, const struct cow_msg *m)
{
	uint64_t sector;
	int valid = 0, r;

	r = place_chunk(d, m->chunk, &sector, &valid);
	if (r)
		return queue_answer(d, cow_msg_fail(m->chunk, r));
	return queue_answer(d, cow_msg_map(m->chunk, sector, valid));
}

/*
 * Record that @chunk's data is at @sector.  If the plugin cannot, the chunk
 * still reads right (the kernel maps it) but cannot be made durable: it is
 * kept, tried again at each commit, and commits fail until it is recorded
 * (a new cowd gets it again from the kernel's replay).
 */
static int record_chunk(struct cowd *d, uint64_t chunk, uint64_t sector)
{
	int r = d->plugin->mark(&d->store, chunk, sector);

	if (r) {
		log_err("%s: cannot record chunk %llu at sector %llu: %s; flushes fail until it "
			"is recorded", d->ident, (unsigned long long)chunk,
			(unsigned long long)sector, d->store.error);
		if (array_reserve(&d->unrecorded, &d->maxunrecorded, d->nunrecorded,
				  sizeof(*d->unrecorded)))
			return -ENOMEM;
		d->unrecorded[d->nunrecorded++] = (struct mapping){ chunk, sector };
	} else {
		d->dirty = 1;
	}
	d->new_since_reload++;
	return 0;
}

/*
 * The replay is over (a message that is not part of it came, or nothing
 * more to read): record the chunks it named.  Until then they were only
 * held: a mark() may place metadata (a qcow2 L2 table), and it must not go
 * where a chunk replayed later has its data.
 */
static int record_replayed(struct cowd *d)
{
	size_t i;
	int r = 0;

	for (i = 0; i < d->nreplayed && !r; i++)
		r = record_chunk(d, d->replayed_ready[i].chunk, d->replayed_ready[i].sector);
	d->nreplayed = 0;
	return r;
}

/* The kernel filled a chunk (or tells a new cowd of one it filled). */
static int handle_ready(struct cowd *d, const struct cow_msg *m)
{
	grant_used(d, m);
	if (m->seq > d->ready_seen)
		d->ready_seen = m->seq;
	if (!(m->flags & COW_READY_REPLAY) || !COW_PLUGIN_HAS(d->plugin, hold))
		return record_chunk(d, m->chunk, m->sector);
	if (d->plugin->hold(&d->store, m->chunk, m->sector))
		return record_chunk(d, m->chunk, m->sector);	/* says why, keeps it */
	if (array_reserve(&d->replayed_ready, &d->maxreplayed, d->nreplayed,
			  sizeof(*d->replayed_ready)))
		return -ENOMEM;
	d->replayed_ready[d->nreplayed++] = (struct mapping){ m->chunk, m->sector };
	return 0;
}

/* The size of the device the store holds, in sectors. */
static uint64_t store_sectors(const struct cowd *d)
{
	return (d->store.dev_size ? d->store.dev_size : d->store.base_size) / COW_SECTOR;
}

/*
 * Make the store hold a device of @sectors (it never shrinks): committed
 * first, as grow() wants.  0, or a negative errno with the reason logged.
 */
static int grow_store(struct cowd *d, uint64_t sectors)
{
	int r;

	if (sectors <= store_sectors(d))
		return 0;
	if (!COW_PLUGIN_HAS(d->plugin, grow)) {
		log_err("%s: the %s format cannot grow past %llu bytes; cowctl convert makes a qcow2 "
			"or packed store of it, which can", d->ident, d->plugin->name,
			(unsigned long long)store_sectors(d) * COW_SECTOR);
		return -EOPNOTSUPP;
	}
	r = d->dirty || d->nunrecorded ? commit(d, 0) : 0;
	if (!r && d->store_failing)
		r = -EIO;
	if (!r) {
		d->store.error[0] = 0;
		r = d->plugin->grow(&d->store, sectors * COW_SECTOR);
	}
	if (r) {
		log_err("%s: cannot grow the store to %llu bytes: %s", d->ident,
			(unsigned long long)sectors * COW_SECTOR,
			d->store.error[0] ? d->store.error : strerror(-r));
		/*
		 * Refused before anything was written, or else what reached
		 * the device is unknown (a header written, its sync failed):
		 * only a new cowd, reading the store, knows (see commit()).
		 */
		if (r != -ENOMEM && r != -EFBIG && r != -EOPNOTSUPP && r != -EBUSY &&
		    r != -ENOSPC && r != -EINVAL)
			d->sync_lost = 1;
		return r;
	}
	log_info("%s: the store grew to %llu bytes", d->ident,
		 (unsigned long long)store_sectors(d) * COW_SECTOR);
	return 0;
}

/*
 * cowctl resize asked the kernel for a larger device: grow the store, say
 * so (the kernel then takes a table of that size), and load one.
 */
static int handle_resize(struct cowd *d, const struct cow_msg *m)
{
	int r = grow_store(d, m->sector), w;
	uint64_t refused;

	/* Alone, to see whether the kernel took it (it checks the last chunk). */
	w = flush_answers(d);
	refused = d->nr_refused;
	if (!w)
		w = queue_answer(d, cow_msg_resized(m->sector, r));
	if (!w)
		w = flush_answers(d);
	if (w)
		return w;
	if (!r && d->nr_refused != refused)
		r = d->refused_errno ? -d->refused_errno : -EIO;	/* the kernel logged why */
	d->resize_error = -r;
	d->resize_sectors = m->sector;
	d->nr_resizes++;
	if (!r) {
		if (m->chunk > d->geo.nr_chunks)
			d->geo.nr_chunks = m->chunk;
		if (m->sector > d->dev_sectors)
			d->dev_sectors = m->sector;
		d->resize_reload = 1;
	}
	write_status(d);
	return 0;
}

/* After the replay: the store grows to the device's size (see size_at_start()). */
static void grow_at_start(struct cowd *d)
{
	if (!grow_store(d, d->grow_to))
		d->grow_to = 0;
	else
		stop(d, 1);
}

static int handle_batch(struct cowd *d, const struct cow_msg *msgs, size_t n)
{
	uint64_t resizes = d->nr_resizes;
	int want_commit = 0, r = 0;
	size_t i;

	for (i = 0; i < n && !r; i++) {
		const char *why;
		char desc[160];

		r = cow_msg_check_incoming(&msgs[i], &d->geo, d->phase, &why);
		/* A copy cowd cannot place could land on anything it allocates. */
		if (r && msgs[i].type == COW_MSG_FILLING)
			r = -EPROTO;
		if (r == -EPROTO) {
			log_err("%s: bad message from the kernel: %s", d->ident, why);
			return r;
		}
		if (r) {
			cow_msg_describe(&msgs[i], desc, sizeof(desc));
			log_err("%s: ignoring a bad message from the kernel (%s): %s", d->ident, why,
				desc);
			r = 0;
			continue;
		}
		if (d->nreplayed && msgs[i].type != COW_MSG_FILLING &&
		    !(msgs[i].type == COW_MSG_READY && (msgs[i].flags & COW_READY_REPLAY))) {
			r = record_replayed(d);
			if (r)
				break;
		}
		switch (msgs[i].type) {
		case COW_MSG_FAULT:
			r = handle_fault(d, &msgs[i]);
			break;
		case COW_MSG_READY:
			r = handle_ready(d, &msgs[i]);
			break;
		case COW_MSG_COPY_FAILED:
			handle_copy_failed(d, &msgs[i]);
			break;
		case COW_MSG_FILLING:
			r = handle_filling(d, &msgs[i]);
			break;
		case COW_MSG_RESIZE:
			r = handle_resize(d, &msgs[i]);
			break;
		case COW_MSG_COMMIT:
			/*
			 * The kernel sends a COMMIT after every READY it
			 * covers; replayed READYs carry no sequence, so the
			 * COMMIT after a replay is what names theirs.
			 */
			if (msgs[i].seq > d->ready_seen)
				d->ready_seen = msgs[i].seq;
			want_commit = 1;
			break;
		default:
			break;
		}
	}
	if (!r && want_commit)
		r = commit(d, 1);
	if (!r)
		r = flush_answers(d);
	if (!r && (d->new_since_reload >= d->reload_after || d->nr_resizes != resizes))
		maybe_reload(d, d->nr_resizes != resizes);
	if (!r && d->grow_to && d->replayed)
		grow_at_start(d);
	return r;
}

static void stop(struct cowd *d, int code)
{
	d->exit_code = code;
	ev_break(d->loop, EVBREAK_ALL);
}

/* ---- table reloads ------------------------------------------------------ */

struct mapping_list {
	struct mapping *m;
	size_t n, max;
};

static int collect_mapping(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct mapping_list *l = ctx;

	if (array_reserve(&l->m, &l->max, l->n, sizeof(*l->m)))
		return -ENOMEM;
	l->m[l->n++] = (struct mapping){ chunk, sector };
	return 0;
}

static void write_status(struct cowd *d)
{
	char tmp[160];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", d->status_path);
	f = fopen(tmp, "we");
	if (!f)
		return;
	fprintf(f, "format=%s\nstore_used_bytes=%llu\nstore_size_bytes=%llu\nreloads=%llu\nlinear_segments=%zu\n"
		"cow_segments=%zu\nlinear_chunks=%llu\ntree_chunks=%llu\ncapped=%d\n"
		"last_suspend_ms=%.3f\nmax_suspend_ms=%.3f\npid=%d\nstore_failing=%d\n"
		"restart_needed=%d\ncommit_errors=%llu\ncopy_errors=%llu\ngranted=%llu\n"
		"device_bytes=%llu\nresizes=%llu\nresize_sectors=%llu\nresize_error=%d\n",
		d->plugin->name,
		(unsigned long long)(COW_PLUGIN_HAS(d->plugin, used_bytes) ? d->plugin->used_bytes(&d->store) : 0),
		(unsigned long long)d->store.cow_size, (unsigned long long)d->nr_reloads, d->stats.linear_segments, d->stats.cow_segments,
		(unsigned long long)d->stats.linear_chunks, (unsigned long long)d->stats.tree_chunks,
		d->stats.capped, d->last_suspend_ms, d->max_suspend_ms, (int)getpid(),
		d->store_failing, d->sync_lost, (unsigned long long)d->nr_commit_errors,
		(unsigned long long)d->nr_copy_errors, (unsigned long long)d->granted,
		(unsigned long long)d->dev_sectors * COW_SECTOR, (unsigned long long)d->nr_resizes,
		(unsigned long long)d->resize_sectors, d->resize_error);
	fclose(f);
	rename(tmp, d->status_path);
}

/*
 * Reload the table so that runs of committed chunks become linear
 * segments.  Everything in the new table must be committed, and every
 * chunk it leaves to cow segments must be in the kernel's remap tree.
 */
static void maybe_reload(struct cowd *d, int force)
{
	struct mapping_list l = { 0 };
	struct segment *segs = NULL;
	uint64_t refused;
	char params[512];
	uint64_t len;
	size_t i, nsegs = 0;
	int r;

	/* Even with --no-reload a resize needs one table, of the new size. */
	if ((d->no_reload && !d->resize_reload) || d->reloader.running ||
	    (!force && !d->new_since_reload))
		return;
	if (commit(d, 0) || flush_answers(d)) {
		stop(d, 1);
		return;
	}
	/* A table may only point at committed chunks. */
	if (d->store_failing)
		return;
	r = dm_table_info(cow_dev_major(d->geo.md_dev), cow_dev_minor(d->geo.md_dev), &len,
			  params, sizeof(params));
	if (r) {
		log_warn("%s: cannot read the device's table (%s); no reload", d->ident, strerror(-r));
		return;
	}
	if (len < d->dev_sectors)
		len = d->dev_sectors;
	r = d->plugin->for_each_mapping(&d->store, collect_mapping, &l);
	if (!r) {
		struct table_policy pol = { d->no_reload ? 0 : d->max_segments, d->min_run };

		r = table_build(l.m, l.n, len, d->geo.chunk_sectors, &pol, &segs, &nsegs,
				&d->job_stats);
	}
	if (r) {
		log_err("%s: cannot build a table: %s", d->ident, strerror(-r));
		free(l.m);
		return;
	}
	/* Chunks the live table serves linearly but the new one does not. */
	for (i = 0; i < l.n; i++) {
		if (table_chunk_linear(d->live_segs, d->nlive, l.m[i].chunk, d->geo.chunk_sectors) &&
		    !table_chunk_linear(segs, nsegs, l.m[i].chunk, d->geo.chunk_sectors))
			queue_answer(d, cow_msg_load(l.m[i].chunk, l.m[i].sector));
	}
	free(l.m);
	refused = d->nr_refused;
	if (flush_answers(d)) {
		free(segs);
		return;
	}
	/* The new table would leave a chunk to the kernel, which lacks it. */
	if (d->nr_refused != refused) {
		log_err("%s: the kernel refused a mapping the new table needs in its tree; no reload",
			d->ident);
		free(segs);
		return;
	}
	memset(&d->job, 0, sizeof(d->job));
	d->job.resize = d->resize_reload;
	d->job.dm_major = cow_dev_major(d->geo.md_dev);
	d->job.dm_minor = cow_dev_minor(d->geo.md_dev);
	snprintf(d->job.cow_params, sizeof(d->job.cow_params), "%s", params);
	snprintf(d->job.cow_dev, sizeof(d->job.cow_dev), "%u:%u", cow_dev_major(d->geo.cow_dev),
		 cow_dev_minor(d->geo.cow_dev));
	d->job.segs = segs;
	d->job.nsegs = nsegs;
	r = reload_start(&d->reloader, &d->job);
	if (r) {
		log_err("%s: cannot start a reload: %s", d->ident, strerror(-r));
		free(segs);
		return;
	}
	d->new_since_reload = 0;
	d->resize_reload = 0;
}

static void reload_done_cb(EV_P_ ev_async *w, int revents)
{
	struct cowd *d = w->data;
	struct reload_job *job = reload_finish(&d->reloader);
	size_t i;

	if (!job)
		return;
	if (job->error == -EBUSY) {
		log_info("%s: no reload now: %s", d->ident, job->why);
		d->new_since_reload = 1;	/* try again at the next interval */
		d->resize_reload |= job->resize;
		free(job->segs);
		return;
	}
	if (job->error) {
		log_err("%s: table reload failed: %s", d->ident, job->why);
		if (job->resize) {
			d->resize_reload = 1;
			d->new_since_reload = 1;	/* try again at the next interval */
			d->resize_error = -job->error;
			write_status(d);
		}
		free(job->segs);
		return;
	}
	if (job->resize)
		log_info("%s: the device has %llu sectors now", d->ident,
			 (unsigned long long)d->dev_sectors);
	/* Linear segments serve these chunks now: the kernel may forget them. */
	for (i = 0; i < job->nsegs; i++) {
		const struct segment *s = &job->segs[i];
		uint64_t cs = d->geo.chunk_sectors;

		if (s->linear)
			queue_answer(d, cow_msg_drop(s->start / cs, (s->len + cs - 1) / cs));
	}
	if (flush_answers(d))
		stop(d, 1);
	free(d->live_segs);
	d->live_segs = job->segs;
	d->nlive = job->nsegs;
	d->stats = d->job_stats;
	d->nr_reloads++;
	d->last_suspend_ms = job->suspend_ms;
	if (job->suspend_ms > d->max_suspend_ms)
		d->max_suspend_ms = job->suspend_ms;
	log_debug("%s: reloaded: %zu linear + %zu cow segments, %llu chunks in the tree%s, suspended %.2f ms",
		  d->ident, d->stats.linear_segments, d->stats.cow_segments,
		  (unsigned long long)d->stats.tree_chunks,
		  d->stats.capped ? " (segment limit reached)" : "", job->suspend_ms);
	if (job->resize)
		d->resize_error = 0;
	write_status(d);
	if (d->resize_reload)
		maybe_reload(d, 1);	/* a resize came while this one ran */
}

static void reload_timer_cb(EV_P_ ev_timer *w, int revents)
{
	maybe_reload(w->data, 0);
}

/*
 * Locations granted to the kernel at a time: 16 MiB of chunks, at most
 * 1024 of them; none for chunks larger than that.  Host space is allocated
 * for them all.
 */
static uint64_t grant_target(const struct cowd *d)
{
	uint64_t t = (16ULL << 20) / ((uint64_t)d->geo.chunk_sectors * COW_SECTOR);

	return t > 1024 ? 1024 : t;
}

/*
 * Keep the kernel supplied with granted locations (COW_MSG_GRANT): a first
 * write then takes one at once, without a round trip to cowd.  Topped up
 * once half are used, a run at a time, only once the kernel's replay to
 * this daemon is over (every location it holds known: see hold()).  A
 * store that cannot grant, or is full, leaves first writes to FAULT, which
 * says why they fail.
 */
static void grant_more(struct cowd *d)
{
	uint64_t len = (uint64_t)d->geo.chunk_sectors * COW_SECTOR, target = grant_target(d);
	uint64_t sector, count;
	struct cow_msg m;
	int runs, r;

	if (!d->replayed || d->grants_off || d->grant_wait || d->store_failing ||
	    d->proto < COW_PROTO_VERSION || !target || !COW_PLUGIN_HAS(d->plugin, grant) ||
	    !COW_PLUGIN_HAS(d->plugin, ungrant) || d->granted > target / 2)
		return;
	for (runs = 0; runs < 8 && d->granted < target; runs++) {
		if (d->plugin->grant(&d->store, target - d->granted, &sector, &count))
			return;
		if (space_allocate(&d->space, sector * COW_SECTOR, count * len)) {
			d->plugin->ungrant(&d->store, sector, count);
			return;
		}
		m = cow_msg_grant(sector, count);
		if (write(d->ctl_fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
			d->granted += count;
			continue;
		}
		r = errno;
		d->plugin->ungrant(&d->store, sector, count);
		/* Replaying to us again, or short of memory: next time. */
		if (r == EAGAIN || r == ENOMEM || r == EINTR)
			break;
		/* It holds all it may: wait until it used one. */
		if (r == ENOSPC) {
			d->grant_wait = 1;
			break;
		}
		log_warn("%s: the kernel refused %llu granted locations at sector %llu (%s); every first write asks cowd",
			 d->ident, (unsigned long long)count, (unsigned long long)sector, strerror(r));
		d->grants_off = 1;
		break;
	}
	write_status(d);
}

struct release {
	struct space *space;
	uint64_t bytes;		/* given back */
};

static int release_run(void *ctx, uint64_t sector, uint64_t count)
{
	struct release *rel = ctx;

	rel->bytes += space_release(rel->space, sector * COW_SECTOR, count * COW_SECTOR);
	return 0;
}

/*
 * Nothing writes the store any more (the kernel said so at the end of its
 * messages, and the last commit is durable): give the host back the space
 * the store holds for nothing, granted or grown in advance.
 */
static void release_unused(struct cowd *d)
{
	struct release rel = { .space = &d->space };
	int r;

	if (!COW_PLUGIN_HAS(d->plugin, for_each_unused))
		return;
	r = d->plugin->for_each_unused(&d->store, release_run, &rel);
	if (r)
		log_err("%s: cannot tell which space the store holds for nothing: %s", d->ident,
			d->store.error[0] ? d->store.error : strerror(-r));
	else if (rel.bytes)
		log_info("%s: %llu KiB held for nothing given back to the host", d->ident,
			 (unsigned long long)(rel.bytes >> 10));
}

static void ctl_cb(EV_P_ ev_io *w, int revents)
{
	struct cowd *d = w->data;
	struct cow_msg msgs[READ_BATCH];
	int rounds, r;

	for (rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(d->ctl_fd, msgs, sizeof(msgs));

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			/* Nothing left to read: the replay is over. */
			if (errno == EAGAIN)
				d->replayed = 1;
			if (d->replayed && d->nreplayed && record_replayed(d)) {
				stop(d, 1);
				return;
			}
			if (d->replayed && d->grow_to)
				grow_at_start(d);
			grant_more(d);
			return;
		}
		if (n < 0) {
			log_err("%s: reading the control device: %s", d->ident, strerror(errno));
			stop(d, 1);
			return;
		}
		if (n == 0) {
			/* The group is gone: make its last mappings durable. */
			log_info("%s: the device is gone; final commit", d->ident);
			r = record_replayed(d);
			if (!r)
				r = commit(d, 0);
			if (!r)
				release_unused(d);
			stop(d, r ? 1 : 0);
			d->nout = 0;
			return;
		}
		if (handle_batch(d, msgs, (size_t)n / sizeof(msgs[0]))) {
			stop(d, 1);
			return;
		}
	}
	grant_more(d);
}

static void commit_timer_cb(EV_P_ ev_timer *w, int revents)
{
	struct cowd *d = w->data;

	if (!d->dirty && d->committed == d->ready_seen)
		return;
	if (commit(d, 0) || flush_answers(d))
		stop(d, 1);
}

static void signal_cb(EV_P_ ev_signal *w, int revents)
{
	struct cowd *d = w->data;

	log_info("%s: signal %d; committing and leaving the device to the next daemon",
		 d->ident, w->signum);
	if (commit(d, 0) == 0)
		flush_answers(d);
	stop(d, 0);
}

/* Wait for and decode the HELLO the kernel queues at open. */
static int read_hello(struct cowd *d)
{
	struct pollfd pfd = { .fd = d->ctl_fd, .events = POLLIN };
	struct cow_msg m;
	ssize_t n;

	if (poll(&pfd, 1, 10000) <= 0) {
		log_err("%s: no HELLO from the kernel", d->ident);
		return -ETIMEDOUT;
	}
	n = read(d->ctl_fd, &m, sizeof(m));
	if (n != (ssize_t)sizeof(m) || cow_msg_use_version(m.version) ||
	    cow_msg_hello_decode(&m, &d->geo)) {
		log_err("%s: the kernel module speaks another protocol (cowd knows versions %u to %u)",
			d->ident, COW_PROTO_OLDEST, COW_PROTO_VERSION);
		return -EPROTO;
	}
	d->proto = m.version;
	if (d->proto < COW_PROTO_VERSION)
		log_info("%s: the loaded dm-cow module is older (protocol %u): first writes ask cowd",
			 d->ident, d->proto);
	return 0;
}

/*
 * Pages of the CoW device left in the page cache may hold what an earlier
 * cowd wrote and a failed sync never wrote to the device: read the store
 * as the device holds it.  Dirty pages are written first, clean ones
 * dropped; an error is harmless (the cache then serves what it has).
 */
static void drop_cached_store(int fd)
{
	if (fdatasync(fd) == 0)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

/* How long a new cowd waits for one that finishes with the same store. */
#define STORE_LOCK_WAIT_MS 10000

static int open_devices(struct cowd *d)
{
	char base_path[256], cow_path[256], why[256];
	uint64_t size;
	int fd, is_file, r;

	fd = open_devt(cow_dev_major(d->geo.base_dev), cow_dev_minor(d->geo.base_dev),
		       O_RDONLY, base_path, sizeof(base_path));
	if (fd < 0) {
		log_err("%s: cannot open the base device %u:%u: %s", d->ident,
			cow_dev_major(d->geo.base_dev), cow_dev_minor(d->geo.base_dev),
			strerror(-fd));
		return fd;
	}
	d->store.base_fd = fd;
	fd = open_devt(cow_dev_major(d->geo.cow_dev), cow_dev_minor(d->geo.cow_dev), O_RDWR,
		       cow_path, sizeof(cow_path));
	if (fd < 0) {
		log_err("%s: cannot open the CoW device %u:%u: %s", d->ident,
			cow_dev_major(d->geo.cow_dev), cow_dev_minor(d->geo.cow_dev),
			strerror(-fd));
		return fd;
	}
	d->store.cow_fd = fd;
	drop_cached_store(fd);
	r = fd_size(d->store.cow_fd, &size, &is_file);
	if (r)
		return r;
	r = space_open(&d->space, fd);
	if (r) {
		log_err("%s: cannot open %s, the file behind the CoW device: %s", d->ident,
			d->space.path, strerror(-r));
		return r;
	}
	r = store_lock(d->space.fd >= 0 ? d->space.fd : fd, STORE_LOCK_WAIT_MS, why, sizeof(why));
	if (r) {
		log_err("%s: not serving %s: %s", d->ident,
			d->space.fd >= 0 ? d->space.path : cow_path, why);
		return r;
	}
	d->store.cow_size = size;
	d->store.cow_is_file = 0;
	d->store.base_size = d->geo.base_sectors * COW_SECTOR;
	d->store.chunk_sectors = d->geo.chunk_sectors;
	/* Name the base as users know it: the file behind a loop device. */
	if (loop_backing_file(cow_dev_major(d->geo.base_dev), cow_dev_minor(d->geo.base_dev),
			      d->base_name, sizeof(d->base_name)))
		snprintf(d->base_name, sizeof(d->base_name), "%s", base_path);
	d->store.base_name = d->base_name;
	snprintf(d->cow_name, sizeof(d->cow_name), "%s", cow_path);
	return 0;
}

struct load_ctx {
	struct cowd *d;
	struct cow_msg *msgs;
	size_t n;
	int error;
};

static int load_one(void *arg, uint64_t chunk, uint64_t sector)
{
	struct load_ctx *lc = arg;

	lc->msgs[lc->n++] = cow_msg_load(chunk, sector);
	if (lc->n == READ_BATCH) {
		lc->error = ctl_send(lc->d, lc->msgs, lc->n, 1);
		lc->n = 0;
	}
	return lc->error;
}

/*
 * Tell the kernel every mapping the store already holds.  A LOAD refused
 * with EBUSY met a write that faulted on the chunk first: that FAULT is
 * answered like any other, and locate() gives the chunk's location with
 * its data valid (see dm-cow-plugin(3)), so nothing is copied over it.
 */
static int load_mappings(struct cowd *d)
{
	struct cow_msg msgs[READ_BATCH];
	struct load_ctx lc = { .d = d, .msgs = msgs };
	int r;

	r = d->plugin->for_each_mapping(&d->store, load_one, &lc);
	if (!r && lc.n)
		r = ctl_send(d, msgs, lc.n, 1);
	return r ? r : lc.error;
}

/*
 * The device's size against the store's.  A larger device (a table made
 * so) has its store grown once the kernel's replay told cowd every
 * location in use (grow_at_start()); a store that cannot grow is refused.
 * A store grown past its base and larger than the table is one a cowd grew
 * and then stopped before it loaded the table (the kernel took the size,
 * HELLO's chunks say): load it now.
 */
static int size_at_start(struct cowd *d)
{
	uint64_t table, stored = store_sectors(d), known;
	int r;

	r = dmdev_sectors_devt(cow_dev_major(d->geo.md_dev), cow_dev_minor(d->geo.md_dev), &table);
	if (r) {
		log_err("%s: cannot read the device's size: %s", d->ident, strerror(-r));
		return r;
	}
	d->dev_sectors = table;
	if (stored < table && !COW_PLUGIN_HAS(d->plugin, grow)) {
		log_err("%s: the device (%llu bytes) is larger than the %s store (%llu bytes), which "
			"cannot grow", d->ident, (unsigned long long)table * COW_SECTOR,
			d->plugin->name, (unsigned long long)stored * COW_SECTOR);
		return -EOPNOTSUPP;
	}
	if (stored < table)
		d->grow_to = table;
	known = d->geo.nr_chunks * d->geo.chunk_sectors;
	/* (A store of the base's size over a shorter table is a table of part of it.) */
	if (stored > table && stored > d->geo.base_sectors && known > table) {
		d->dev_sectors = stored < known ? stored : known;
		d->resize_reload = 1;
	}
	return 0;
}

int cowd_start(struct cowd *d)
{
	char path[256];
	struct cow_msg attach;
	int created = 0, r;

	d->store.base_fd = d->store.cow_fd = -1;
	d->space.fd = -1;
	d->image_lock_fd = -1;
	snprintf(path, sizeof(path), "%s/%s", COW_CTL_DIR, d->ident);
	d->ctl_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (d->ctl_fd < 0) {
		r = -errno;
		if (errno == ENOENT)
			log_err("%s: no dm-cow group of that name (%s missing; is a cow table loaded?)",
				d->ident, path);
		else if (errno == EBUSY)
			log_err("%s: another daemon already serves this group", d->ident);
		else
			log_err("%s: cannot open %s: %s", d->ident, path, strerror(errno));
		return r;
	}
	r = read_hello(d);
	if (r)
		return r;
	r = open_devices(d);
	if (r)
		return r;
	r = plugins_load(&d->plugins, d->plugin_dir);
	if (r <= 0) {
		log_err("%s: no store plugins found in %s", d->ident, d->plugins.dir);
		return r < 0 ? r : -ENOENT;
	}
	r = store_open(&d->plugins, &d->store, d->format, &d->plugin, &created);
	if (r) {
		log_err("%s: refusing the store on %s: %s", d->ident, d->cow_name, d->store.error);
		return r;
	}
	d->store_open = 1;
	d->store_created = created;
	r = size_at_start(d);
	if (r)
		return r;
	/* A qcow2 image is QEMU's format: lock it as QEMU would. */
	if (!strcmp(d->plugin->name, "qcow2") && d->space.fd >= 0) {
		char why[300];

		r = image_lock(d->space.path, why, sizeof(why));
		if (r < 0) {
			log_err("%s: refusing the image %s: %s; stop what uses it first",
				d->ident, d->space.path, why);
			return r;
		}
		d->image_lock_fd = r;
	}

	d->phase = d->plugin->data_phase(&d->store);
	attach = cow_msg_attach(d->phase);
	if (write(d->ctl_fd, &attach, sizeof(attach)) != (ssize_t)sizeof(attach)) {
		log_err("%s: the kernel refused ATTACH: %s", d->ident, strerror(errno));
		return -errno;
	}
	r = load_mappings(d);
	if (r) {
		log_err("%s: cannot hand the store's mappings to the kernel", d->ident);
		return r;
	}
	/* A device loaded but not resumed yet goes live now, with the store. */
	r = dm_resume_loaded(cow_dev_major(d->geo.md_dev), cow_dev_minor(d->geo.md_dev));
	if (r < 0) {
		log_err("%s: cannot resume the device with the store loaded (%s); see dmesg",
			d->ident, strerror(-r));
		return r;
	}
	if (r > 0)
		log_info("%s: device resumed with the store's mappings in place", d->ident);
	return 0;
}

int cowd_run(struct cowd *d)
{
	log_info("%s: serving; %s store on %s (%s), base %s, %u-sector chunks", d->ident,
		 d->plugin->name, d->cow_name, d->store_created ? "created" : "opened",
		 d->base_name, d->geo.chunk_sectors);
	/* Never page-fault into I/O that may need this very device. */
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		log_warn("%s: mlockall failed: %s", d->ident, strerror(errno));
	/*
	 * Nor wait in memory reclaim for writeback to it: as an I/O flusher
	 * (like the NBD and FUSE servers of a swap or root device), our
	 * allocations never recurse into I/O.
	 */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		log_warn("%s: cannot become an I/O flusher (PR_SET_IO_FLUSHER): %s",
			 d->ident, strerror(errno));

	d->loop = ev_default_loop(EVFLAG_AUTO);
	ev_io_init(&d->ctl_watcher, ctl_cb, d->ctl_fd, EV_READ);
	d->ctl_watcher.data = d;
	ev_io_start(d->loop, &d->ctl_watcher);
	ev_timer_init(&d->commit_timer, commit_timer_cb, d->commit_interval,
		      d->commit_interval);
	d->commit_timer.data = d;
	ev_timer_start(d->loop, &d->commit_timer);
	ev_signal_init(&d->sigterm, signal_cb, SIGTERM);
	d->sigterm.data = d;
	ev_signal_start(d->loop, &d->sigterm);
	ev_signal_init(&d->sigint, signal_cb, SIGINT);
	d->sigint.data = d;
	ev_signal_start(d->loop, &d->sigint);
	ev_async_init(&d->reloader.done, reload_done_cb);
	d->reloader.done.data = d;
	ev_async_start(d->loop, &d->reloader.done);
	if (d->reload_interval > 0) {
		ev_timer_init(&d->reload_timer, reload_timer_cb, d->reload_interval,
			      d->reload_interval);
		d->reload_timer.data = d;
		ev_timer_start(d->loop, &d->reload_timer);
	}
	mkdir("/run/dm-cow", 0700);
	snprintf(d->status_path, sizeof(d->status_path), "/run/dm-cow/%s.status", d->ident);
	write_status(d);
	/* Mapped chunks become linear segments from the start. */
	maybe_reload(d, 1);

	ev_run(d->loop, 0);
	/*
	 * A reload in flight may be suspending the device, which waits for
	 * bios that wait for us: keep answering until it is done.
	 */
	while (d->reloader.running)
		ev_run(d->loop, EVRUN_ONCE);
	return d->exit_code;
}

void cowd_cleanup(struct cowd *d)
{
	if (d->store_open)
		d->plugin->close(&d->store);
	plugins_unload(&d->plugins);
	if (d->store.base_fd >= 0)
		close(d->store.base_fd);
	if (d->store.cow_fd >= 0)
		close(d->store.cow_fd);
	space_close(&d->space);
	if (d->image_lock_fd >= 0)
		close(d->image_lock_fd);
	if (d->ctl_fd >= 0)
		close(d->ctl_fd);
	free(d->out);
	free(d->unrecorded);
	free(d->replayed_ready);
	free(d->live_segs);
	if (d->status_path[0])
		unlink(d->status_path);
}
