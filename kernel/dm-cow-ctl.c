// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-cow control device: /dev/dm-cow/IDENT, through which cowd learns of
 * faults, READY chunks and commit requests, and answers them (see
 * include/dm-cow-proto.h).  A new daemon is told everything its
 * predecessor may not have seen.  The locking rules are in dm-cow.h.
 */

#include "dm-cow.h"

static DEFINE_XARRAY_ALLOC(cow_minors);	/* minor -> group; cow_groups_mutex */
static dev_t cow_ctl_base;
static struct cdev cow_cdev;
static struct class *cow_class;

/* ---------------------------------------------------------------------- */
/* Control device                                                          */

static void msg_init(struct cow_msg *m, u16 type)
{
	memset(m, 0, sizeof(*m));
	m->version = COW_PROTO_VERSION;
	m->type = type;
}

/*
 * A COMMIT asks for every READY the daemon has been told of (told_seq); it
 * is sent right after the READYs it covers, without waiting for the flow of
 * new chunks to stop.  While flushes wait, a COMMIT that would cover
 * nothing new waits for the next READY instead.
 */
static bool commit_sendable(struct cow_group *g)
{
	lockdep_assert_held(&g->lock);
	return g->commit_wanted && !g->replaying &&
	       (g->told_seq > g->committed_seq ||
		bio_list_empty(&g->commit_wait));
}

static bool ctl_has_messages(struct cow_group *g)
{
	lockdep_assert_held(&g->lock);
	return g->hello_pending || g->replaying || g->resize_pending ||
	       !list_empty(&g->ready) ||
	       !list_empty(&g->copy_failed) || !list_empty(&g->fault_queued) ||
	       commit_sendable(g);
}

/*
 * Fill @msgs with up to @max messages, in the order that keeps the protocol
 * sound: the replay (FILLING for every copy in flight, then READY for every
 * remap) before any FAULT, so that a new daemon knows every location the
 * kernel holds before it allocates; READY before the COMMIT that must cover
 * it.  READY entries handed out are moved to @freed for the caller to free.
 *
 * Replayed READYs carry sequence 0: the new daemon learns their mappings,
 * but only the COMMIT that follows the replay tells it which sequence they
 * are covered by, so a commit it makes on its own mid-replay claims nothing
 * it has not seen.
 */
static unsigned int ctl_collect(struct cow_group *g, struct cow_msg *msgs,
				unsigned int max, struct list_head *freed)
{
	struct pending_chunk *pc, *tmp;
	unsigned int n = 0;
	void *entry;

	lockdep_assert_held(&g->lock);

	if (g->hello_pending && n < max) {
		struct cow_msg *m = &msgs[n++];

		msg_init(m, COW_MSG_HELLO);
		m->chunk = g->nr_chunks;
		m->sector = g->base_sectors;
		m->arg[0] = g->chunk_sectors;
		m->arg[1] = g->cow_bdev ? bdev_nr_sectors(g->cow_bdev) : 0;
		m->arg[2] = ((u64)new_encode_dev(g->base_dev) << 32) |
			    new_encode_dev(g->cow_dev);
		m->seq = new_encode_dev(g->md_dev);
		g->hello_pending = false;
	}
	/*
	 * A replay goes first and alone: every FILLING, then a READY for
	 * every chunk of the remap tree, and only then live messages (a
	 * FAULT answered before every copy in flight is known could be
	 * placed over one; a live READY would let a COMMITTED cover chunks
	 * the daemon was not told of yet).  Most pending chunks may be
	 * waiting for a FAULT and many remap entries may be slots of copies:
	 * look at COW_REPLAY_SCAN of them per step, with interrupts off,
	 * and let ctl_read() come back for the rest.
	 */
	if (g->replaying) {
		unsigned int scanned = 0;
		struct rb_node *next;

		if (g->replaying_fills) {
			pc = pending_find_from(g, g->fill_next);
			for (; pc && n < max && scanned < COW_REPLAY_SCAN; scanned++) {
				if (pc->state == PENDING_COPYING) {
					msg_init(&msgs[n], COW_MSG_FILLING);
					msgs[n].chunk = pc->chunk;
					msgs[n].sector = pc->cow_sector;
					n++;
				}
				g->fill_next = pc->chunk + 1;
				next = rb_next(&pc->node);
				pc = next ? rb_entry(next, struct pending_chunk, node) : NULL;
			}
			if (!pc)
				g->replaying_fills = false;
		}
		for (; !g->replaying_fills && n < max && scanned < COW_REPLAY_SCAN; scanned++) {
			unsigned long index = g->replay_next;

			entry = xa_find(&g->remaps, &index, ULONG_MAX, XA_PRESENT);
			if (!entry) {
				g->replaying = false;
				g->told_seq = max(g->told_seq, g->replay_seq);
				break;
			}
			g->replay_next = index + 1;
			if (!xa_is_value(entry))
				continue;
			msg_init(&msgs[n], COW_MSG_READY);
			msgs[n].flags = COW_READY_REPLAY;
			msgs[n].chunk = index;
			msgs[n].sector = xa_to_value(entry);
			n++;
		}
		if (g->replaying)
			return n;
	}
	/* Before any FAULT: the store grows before chunks past it come. */
	if (g->resize_pending && n < max) {
		msg_init(&msgs[n], COW_MSG_RESIZE);
		msgs[n].sector = g->resize_to;
		msgs[n].chunk = DIV_ROUND_UP_ULL(g->resize_to, g->chunk_sectors);
		n++;
		g->resize_pending = false;
	}
	list_for_each_entry_safe(pc, tmp, &g->ready, list) {
		if (n >= max)
			break;
		msg_init(&msgs[n], COW_MSG_READY);
		msgs[n].flags = pc->granted ? COW_READY_GRANTED : 0;
		msgs[n].chunk = pc->chunk;
		msgs[n].sector = pc->cow_sector;
		msgs[n].seq = pc->ready_seq;
		n++;
		g->told_seq = max(g->told_seq, pc->ready_seq);
		list_move_tail(&pc->list, freed);
	}
	list_for_each_entry_safe(pc, tmp, &g->copy_failed, list) {
		if (n >= max)
			break;
		msg_init(&msgs[n], COW_MSG_COPY_FAILED);
		msgs[n].flags = (pc->granted ? COW_READY_GRANTED : 0) |
				(pc->base_error ? COW_COPY_BASE_ERROR : 0);
		msgs[n].chunk = pc->chunk;
		msgs[n].sector = pc->cow_sector;
		msgs[n].error = pc->error;
		n++;
		list_move_tail(&pc->list, freed);
	}
	list_for_each_entry_safe(pc, tmp, &g->fault_queued, list) {
		if (n >= max)
			break;
		msg_init(&msgs[n], COW_MSG_FAULT);
		msgs[n].chunk = pc->chunk;
		n++;
		pc->state = PENDING_FAULT_SENT;
		list_move_tail(&pc->list, &g->fault_sent);
	}
	if (n < max && commit_sendable(g)) {
		msg_init(&msgs[n], COW_MSG_COMMIT);
		msgs[n].seq = g->told_seq;
		n++;
		g->commit_wanted = false;
	}
	return n;
}

/*
 * A daemon (a new one, or one that lost messages) learns everything it may
 * not have seen: the geometry, every location a copy its predecessor
 * answered is filling, every chunk in the remap tree, every fault not
 * answered, and a COMMIT if anything may not be committed.
 */
static void ctl_restart(struct cow_group *g)
{
	struct pending_chunk *pc;

	lockdep_assert_held(&g->lock);
	g->hello_pending = true;
	list_for_each_entry(pc, &g->fault_sent, list)
		pc->state = PENDING_FAULT_QUEUED;
	list_splice_init(&g->fault_sent, &g->fault_queued);
	g->replaying = true;
	g->replaying_fills = true;
	g->fill_next = 0;
	g->replay_next = 0;
	g->replay_seq = g->published_seq;
	g->told_seq = 0;
	g->resize_pending = g->resize_to != 0;
	if (g->committed_seq < g->ready_seq || !bio_list_empty(&g->commit_wait))
		g->commit_wanted = true;
}

static bool ctl_readable(struct cow_group *g)
{
	bool r;

	spin_lock_irq(&g->lock);
	r = g->drained || ctl_has_messages(g);
	spin_unlock_irq(&g->lock);
	return r;
}

/*
 * Messages are collected into, and copied out of, g->ctl_msgs under
 * ctl_mutex; the wait for messages happens without it.  The daemon is on
 * the writeback path of the device it serves: a fault in the copy must not
 * wait for that writeback (see memalloc_noio_save()).
 */
static ssize_t ctl_read(struct file *file, char __user *buf, size_t len,
			loff_t *ppos)
{
	struct cow_group *g = file->private_data;
	struct cow_msg *msgs = g->ctl_msgs;
	struct pending_chunk *pc, *tmp;
	unsigned int max = min_t(size_t, len / sizeof(*msgs), COW_MSG_BATCH);
	unsigned int n, noio;
	LIST_HEAD(freed);
	ssize_t r;

	if (!max)
		return -EINVAL;
	for (;;) {
		bool drained, replaying;

		if (mutex_lock_interruptible(&g->ctl_mutex))
			return -ERESTARTSYS;
		spin_lock_irq(&g->lock);
		/*
		 * A dead group still hands out what it has (the READYs of
		 * fills that completed before the last target went), then
		 * reads end of file.
		 */
		n = ctl_collect(g, msgs, max, &freed);
		drained = g->drained;
		replaying = g->replaying;
		spin_unlock_irq(&g->lock);
		if (n)
			break;
		mutex_unlock(&g->ctl_mutex);
		if (replaying) {
			/* A replay step found nothing to say yet: go on. */
			if (signal_pending(current))
				return -ERESTARTSYS;
			cond_resched();
			continue;
		}
		if (drained)
			return 0;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		r = wait_event_interruptible(g->wait, ctl_readable(g));
		if (r)
			return r;
	}
	r = n * sizeof(*msgs);
	noio = memalloc_noio_save();
	if (copy_to_user(buf, msgs, r)) {
		/*
		 * The daemon did not get these messages: start the
		 * conversation over, as for a new daemon, so that nothing it
		 * was not told of is ever covered by a COMMIT.  READYs come
		 * back with the replay of the remaps; failed copies are
		 * queued again.
		 */
		spin_lock_irq(&g->lock);
		list_for_each_entry_safe_reverse(pc, tmp, &freed, list)
			if (pc->state == PENDING_COPY_FAILED)
				list_move(&pc->list, &g->copy_failed);
		ctl_restart(g);
		spin_unlock_irq(&g->lock);
		r = -EFAULT;
	}
	/*
	 * A granted location's slot names its chunk from now on (the daemon
	 * may DROP the chunk once it knows of it), unless a DROP went first.
	 */
	list_for_each_entry(pc, &freed, list)
		if (pc->state == PENDING_READY && pc->granted)
			xa_cmpxchg(&g->cow_slots, cow_slot(g, pc->cow_sector),
				   xa_mk_value(COW_SLOT_GRANTED),
				   xa_mk_value(pc->chunk), GFP_KERNEL);
	memalloc_noio_restore(noio);
	mutex_unlock(&g->ctl_mutex);
	list_for_each_entry_safe(pc, tmp, &freed, list) {
		list_del(&pc->list);
		mempool_free(pc, &g->pending_pool);
	}
	return r;
}

static __poll_t ctl_poll(struct file *file, poll_table *wait)
{
	struct cow_group *g = file->private_data;
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	poll_wait(file, &g->wait, wait);
	spin_lock_irq(&g->lock);
	if (g->drained)
		mask |= EPOLLHUP;
	if (ctl_has_messages(g))
		mask |= EPOLLIN | EPOLLRDNORM;
	spin_unlock_irq(&g->lock);
	return mask;
}

static int ctl_reject(struct cow_group *g, const struct cow_msg *m, int err,
		      const char *why)
{
	spin_lock_irq(&g->lock);
	g->nr_rejected++;
	spin_unlock_irq(&g->lock);
	DMWARN_LIMIT("%s: control message type %u chunk %llu refused: %s",
		     g->ident, m->type, m->chunk, why);
	return err;
}

/*
 * Validate a CoW location for @chunk; returns its slot or a negative error.
 * The CoW device's size is read live (a loop device over a store file grows
 * with it); g->cow_bdev stays valid while the group is not dead, which
 * ctl_write() checked under the ctl_mutex we hold.
 */
static long ctl_check_location(struct cow_group *g, const struct cow_msg *m,
			       const char **why)
{
	sector_t cow_size, len = chunk_len(g, m->chunk);

	lockdep_assert_held(&g->ctl_mutex);
	cow_size = bdev_nr_sectors(g->cow_bdev);

	if (m->sector < g->phase ||
	    ((m->sector - g->phase) & (g->chunk_sectors - 1))) {
		*why = "CoW location not aligned to the daemon's data phase";
		return -EINVAL;
	}
	if (m->sector > cow_size || cow_size - m->sector < len) {
		*why = "CoW location outside the CoW device";
		return -ERANGE;
	}
	return cow_slot(g, m->sector);
}

/*
 * Take CoW slot @slot for m->chunk.  Returns 1 if newly taken, 0 if the
 * chunk holds it already (a reload dropped its remap, the location stayed
 * its own), or a negative error: -EEXIST for another chunk's location.
 */
static int claim_slot(struct cow_group *g, const struct cow_msg *m, long slot)
{
	int r;

	lockdep_assert_held(&g->ctl_mutex);
	r = xa_insert(&g->cow_slots, slot, xa_mk_value(m->chunk), GFP_KERNEL);

	if (!r)
		return 1;
	if (r == -EBUSY && xa_load(&g->cow_slots, slot) == xa_mk_value(m->chunk))
		return 0;
	if (r == -EBUSY)
		return ctl_reject(g, m, -EEXIST,
				  "CoW location inside another mapping");
	return r;
}

/*
 * Take m->sector for m->chunk: a valid location, its CoW slot, and a
 * reserved remap entry (so that publishing it never allocates).  Returns
 * the slot, or a negative error with nothing taken; on success *claimed
 * says whether the slot was taken anew (see claim_slot()).
 */
static long take_location(struct cow_group *g, const struct cow_msg *m, int *claimed)
{
	const char *why = NULL;
	long slot;
	int r;

	lockdep_assert_held(&g->ctl_mutex);
	slot = ctl_check_location(g, m, &why);
	if (slot < 0)
		return ctl_reject(g, m, slot, why);
	*claimed = claim_slot(g, m, slot);
	if (*claimed < 0)
		return *claimed;
	r = xa_reserve_irq(&g->remaps, m->chunk, GFP_KERNEL);
	if (r) {
		if (*claimed)
			xa_erase(&g->cow_slots, slot);
		return r;
	}
	return slot;
}

static int ctl_map(struct cow_group *g, const struct cow_msg *m)
{
	struct pending_chunk *pc;
	int claimed;
	long slot;

	spin_lock_irq(&g->lock);
	pc = pending_find(g, m->chunk);
	if (!pc || pc->state != PENDING_FAULT_SENT) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -ENOENT, "chunk was not asked for");
	}
	spin_unlock_irq(&g->lock);

	slot = take_location(g, m, &claimed);
	if (slot < 0)
		return slot;

	/*
	 * The chunk's data may land from now on: its mark sends reads to
	 * the locked path (see g->remaps).  The entry is reserved, and only
	 * this chunk's fill or publication can take it from here.
	 */
	spin_lock_irq(&g->lock);
	WARN_ON_ONCE(xa_is_err(xa_store(&g->remaps, m->chunk, pc, GFP_ATOMIC)));
	pc->marked = true;
	pc->state = PENDING_COPYING;
	g->full = false;
	pc->slot_claimed = claimed;
	pc->cow_sector = m->sector;
	pc->data_valid = m->flags & COW_MAP_DATA_VALID;
	/* The work fills it: the daemon's write() issues no I/O. */
	list_move_tail(&pc->list, &g->to_fill);
	g->faults--;
	group_kick(g);
	spin_unlock_irq(&g->lock);
	return 0;
}

static int ctl_load(struct cow_group *g, const struct cow_msg *m)
{
	struct pending_chunk *pc;
	int claimed, r;
	sector_t cur;
	long slot;

	if (remap_lookup(g, m->chunk, &cur)) {
		if (cur == m->sector)
			return 0;
		return ctl_reject(g, m, -EEXIST, "chunk already mapped elsewhere");
	}
	spin_lock_irq(&g->lock);
	pc = pending_find(g, m->chunk);
	spin_unlock_irq(&g->lock);
	if (pc)
		return ctl_reject(g, m, -EBUSY, "chunk has a pending fault");

	/*
	 * A chunk with a pending fault must be answered with MAP (DATA_VALID)
	 * instead.  The entry is published under g->lock: a bio that misses
	 * the pending tree re-reads the remaps under the same lock.  A first
	 * write meanwhile may have taken the reserved entry for the mark of
	 * a granted location (then releasing is a no-op), or reserved it too
	 * and left it; if its chunk went away since, the entry went with it,
	 * and storing may allocate, and fail.
	 */
	slot = take_location(g, m, &claimed);
	if (slot < 0)
		return slot;
	spin_lock_irq(&g->lock);
	r = -EBUSY;
	if (!pending_find(g, m->chunk)) {
		r = xa_err(xa_store(&g->remaps, m->chunk,
				    xa_mk_value(m->sector), GFP_ATOMIC));
		if (!r)
			g->nr_mapped++;
	}
	if (r)
		xa_release(&g->remaps, m->chunk);
	spin_unlock_irq(&g->lock);
	if (r && claimed)
		xa_erase(&g->cow_slots, slot);
	if (r == -EBUSY)
		return ctl_reject(g, m, -EBUSY, "chunk has a pending fault");
	return r;
}

static int ctl_fail(struct cow_group *g, const struct cow_msg *m)
{
	struct pending_chunk *pc;
	struct bio_list bios;
	blk_status_t status;

	if (m->error >= 0 || m->error < -MAX_ERRNO)
		return ctl_reject(g, m, -EINVAL, "FAIL needs a negative errno");
	spin_lock_irq(&g->lock);
	pc = pending_find(g, m->chunk);
	if (!pc || pc->state != PENDING_FAULT_SENT) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -ENOENT, "chunk was not asked for");
	}
	pending_unlink(g, pc);
	list_del(&pc->list);
	g->faults--;
	g->nr_failed_faults++;
	if (m->error == -ENOSPC)
		g->full = true;
	bios = pc->bios;
	spin_unlock_irq(&g->lock);

	status = errno_to_blk_status(m->error);
	fail_bios(&bios, status);
	mempool_free(pc, &g->pending_pool);
	return 0;
}

/*
 * After a reload made chunks linear segments, their remaps are dead weight.
 * Refuse if any cow target still covers one of them, live or not: a
 * suspended table comes back on resume, an inactive one may be resumed, and
 * either would then read the chunk from the base.  The check is made for
 * each chunk under g->lock, so a table constructed meanwhile is seen too.
 * The slots go as well, so that kernel memory follows the remap tree: the
 * overlap check covers the locations the kernel itself serves (pending and
 * remapped chunks); those of dropped chunks are served by linear segments
 * of a table the daemon loaded, and only the daemon allocates locations.
 */
static int ctl_drop(struct cow_group *g, const struct cow_msg *m)
{
	u64 first = m->chunk, count = m->arg[0];
	unsigned long index;
	void *entry;

	lockdep_assert_held(&g->ctl_mutex);
	if (!count || count > g->nr_chunks - first)
		return ctl_reject(g, m, -ERANGE, "DROP range beyond the device");
	spin_lock_irq(&g->lock);
	if (group_targets_cover(g, chunk_to_sector(g, first),
			  chunk_to_sector(g, first + count))) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -EBUSY,
				  "DROP of chunks a cow target serves");
	}
	spin_unlock_irq(&g->lock);
	xa_for_each_range(&g->remaps, index, entry, first, first + count - 1) {
		sector_t cow_sector;
		void *owner;

		if (!xa_is_value(entry))
			continue;	/* a pending mark, or reserved for a MAP */
		cow_sector = xa_to_value(entry);
		spin_lock_irq(&g->lock);
		if (group_targets_cover(g, chunk_to_sector(g, index),
				  chunk_to_sector(g, index + 1))) {
			spin_unlock_irq(&g->lock);
			return ctl_reject(g, m, -EBUSY,
					  "DROP of chunks a cow target serves");
		}
		xa_erase(&g->remaps, index);
		g->nr_mapped--;
		g->nr_dropped++;
		spin_unlock_irq(&g->lock);
		/* A granted slot still says so until its READY is read. */
		owner = xa_load(&g->cow_slots, cow_slot(g, cow_sector));
		if (owner == xa_mk_value(index) ||
		    owner == xa_mk_value(COW_SLOT_GRANTED))
			xa_erase(&g->cow_slots, cow_slot(g, cow_sector));
		cond_resched();
	}
	return 0;
}

/*
 * The daemon made every READY <= m->seq durable.  It cannot claim more
 * than it was told of.  Waiters are released in order, as far as the
 * commit reaches; if some still wait, the next COMMIT goes out after the
 * next READY.
 */
static int ctl_committed(struct cow_group *g, const struct cow_msg *m)
{
	spin_lock_irq(&g->lock);
	if (m->seq > g->told_seq) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -ERANGE, "commit of a chunk not READY");
	}
	g->nr_commits++;
	if (m->seq > g->committed_seq)
		g->committed_seq = m->seq;
	if (g->failing) {
		g->failing = false;
		group_raise_event(g);
	}
	if (release_committed(g))
		group_kick(g);
	if (!bio_list_empty(&g->commit_wait)) {
		g->commit_wanted = true;
		wake_up_interruptible(&g->wait);
	}
	spin_unlock_irq(&g->lock);
	return 0;
}

/*
 * The daemon could not make the READYs up to m->seq durable.  The flushes
 * that needed that commit fail with EIO, and only they: a later flush asks
 * for a new commit, which the daemon tries again.  The group reports
 * "failing" until a commit succeeds.
 */
static int ctl_commit_failed(struct cow_group *g, const struct cow_msg *m)
{
	struct bio_list bios = BIO_EMPTY_LIST;
	struct bio *bio;

	if (m->error >= 0 || m->error < -MAX_ERRNO)
		return ctl_reject(g, m, -EINVAL, "COMMIT_FAILED needs a negative errno");
	spin_lock_irq(&g->lock);
	if (m->seq > g->told_seq) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -ERANGE, "commit of a chunk not READY");
	}
	while ((bio = bio_list_peek(&g->commit_wait))) {
		struct cow_bio *cb = dm_per_bio_data(bio, sizeof(struct cow_bio));

		if (cb->commit_seq > m->seq)
			break;
		bio_list_add(&bios, bio_list_pop(&g->commit_wait));
	}
	g->nr_commit_errors++;
	if (!g->failing) {
		g->failing = true;
		group_raise_event(g);
	}
	if (!bio_list_empty(&g->commit_wait)) {
		g->commit_wanted = true;
		wake_up_interruptible(&g->wait);
	}
	spin_unlock_irq(&g->lock);
	if (!bio_list_empty(&bios))
		DMERR_LIMIT("%s: the daemon could not commit the store (error %d); failing %u flushes",
			    g->ident, m->error, bio_list_size(&bios));
	fail_bios(&bios, BLK_STS_IOERR);
	return 0;
}

/* A granted run starting at @sector continues the newest run. */
static bool grant_extends(struct cow_group *g, sector_t sector)
{
	unsigned int last = (g->grant_head + g->grant_runs - 1) % COW_GRANT_RUNS;

	lockdep_assert_held(&g->lock);
	return g->grant_runs &&
	       g->grants[last].sector +
	       ((sector_t)g->grants[last].count << g->chunk_shift) == sector;
}

/*
 * RESIZED: the daemon grew its store to m->sector sectors (durably), or
 * could not (m->error).  Tables up to that size are accepted from now on
 * (cow_ctr()), and what the group's chunks cover grows with it.
 */
static int ctl_resized(struct cow_group *g, const struct cow_msg *m)
{
	u64 last = (g->dev_sectors - 1) >> g->chunk_shift;
	struct pending_chunk *pc;
	const char *why = NULL;
	sector_t cow_sector;
	int err = m->error;
	bool placed;

	lockdep_assert_held(&g->ctl_mutex);
	if (err > 0 || err < -MAX_ERRNO)
		return ctl_reject(g, m, -EINVAL, "RESIZED without a negative errno or 0");
	spin_lock_irq(&g->lock);
	if (!g->resize_to || m->sector != g->resize_to) {
		why = "RESIZED answers no resize asked for";
	} else if (!err && g->dev_sectors & (g->chunk_sectors - 1)) {
		/*
		 * The last chunk grows whole: its location must be whole
		 * (a UML store's last one may end with the CoW device).
		 */
		pc = pending_find(g, last);
		if (pc) {
			/* A fault not answered yet has no location. */
			placed = pc->state != PENDING_FAULT_QUEUED &&
				 pc->state != PENDING_FAULT_SENT;
			cow_sector = pc->cow_sector;
		} else {
			placed = remap_lookup(g, last, &cow_sector);
		}
		if (placed && cow_sector + g->chunk_sectors >
			      bdev_nr_sectors(g->cow_bdev))
			err = -ENOSPC;
	}
	if (!why) {
		if (!err && m->sector > g->dev_sectors) {
			WRITE_ONCE(g->dev_sectors, m->sector);
			g->nr_chunks = DIV_ROUND_UP_ULL(m->sector, g->chunk_sectors);
		}
		g->resize_to = 0;
		g->resize_pending = false;
	}
	spin_unlock_irq(&g->lock);
	if (why)
		return ctl_reject(g, m, -EINVAL, why);
	if (err != m->error)
		return ctl_reject(g, m, err, "the last chunk's CoW location is short: the device cannot grow");
	if (err)
		DMERR_LIMIT("%s: cowd could not grow the store to %llu sectors: error %d",
			    g->ident, (unsigned long long)m->sector, err);
	return 0;
}

/*
 * Locations the daemon hands out in advance (see COW_MSG_GRANT).  Each
 * takes its CoW slot now, so that no MAP, LOAD or other GRANT can overlap
 * it; a chunk that uses it takes the slot over (ctl_read()).
 */
static int ctl_grant(struct cow_group *g, const struct cow_msg *m)
{
	u64 count = m->arg[0], i;
	sector_t cow_size = bdev_nr_sectors(g->cow_bdev);
	unsigned long first;
	const char *why = NULL;
	unsigned int run;
	int r = 0;

	lockdep_assert_held(&g->ctl_mutex);
	spin_lock_irq(&g->lock);
	if (g->replaying) {
		r = -EAGAIN;	/* not an error: the daemon tries again */
	} else if (!count || count > COW_MAX_GRANTED - g->granted) {
		r = -ENOSPC;
		why = "more unused granted locations than COW_MAX_GRANTED";
	} else if (g->grant_runs == COW_GRANT_RUNS &&
		   !grant_extends(g, m->sector)) {
		r = -ENOSPC;
		why = "more runs of unused granted locations than COW_GRANT_RUNS";
	}
	spin_unlock_irq(&g->lock);
	if (r == -EAGAIN)
		return r;
	if (!r && (m->sector < g->phase ||
		   ((m->sector - g->phase) & (g->chunk_sectors - 1)))) {
		r = -EINVAL;
		why = "CoW location not aligned to the daemon's data phase";
	} else if (!r && (m->sector > cow_size ||
			  (cow_size - m->sector) >> g->chunk_shift < count)) {
		r = -ERANGE;
		why = "CoW location outside the CoW device";
	}
	if (r)
		return ctl_reject(g, m, r, why);
	first = cow_slot(g, m->sector);
	for (i = 0; i < count && !r; i++)
		r = xa_insert(&g->cow_slots, first + i,
			      xa_mk_value(COW_SLOT_GRANTED), GFP_KERNEL);
	if (r) {
		for (i--; i > 0; i--)
			xa_erase(&g->cow_slots, first + i - 1);
		if (r == -EBUSY)
			return ctl_reject(g, m, -EEXIST, "granted location taken already");
		return r;
	}
	spin_lock_irq(&g->lock);
	if (grant_extends(g, m->sector)) {
		run = (g->grant_head + g->grant_runs - 1) % COW_GRANT_RUNS;
	} else {
		run = (g->grant_head + g->grant_runs) % COW_GRANT_RUNS;
		g->grants[run].sector = m->sector;
		g->grants[run].count = 0;
		g->grant_runs++;
	}
	g->grants[run].count += count;
	WRITE_ONCE(g->granted, g->granted + count);
	spin_unlock_irq(&g->lock);
	return 0;
}

/*
 * The daemon is gone: no other can know of its unused grants.  Their slots
 * go; first writes fault until the next daemon grants.
 */
static void ctl_drop_grants(struct cow_group *g)
{
	unsigned int head, runs, i;
	unsigned long slot;

	mutex_lock(&g->ctl_mutex);
	spin_lock_irq(&g->lock);
	head = g->grant_head;
	runs = g->grant_runs;
	g->grant_runs = 0;
	WRITE_ONCE(g->granted, 0);
	spin_unlock_irq(&g->lock);
	/* Only ctl_grant(), under ctl_mutex, writes g->grants[] now. */
	for (i = 0; i < runs; i++) {
		unsigned int run = (head + i) % COW_GRANT_RUNS;

		slot = cow_slot(g, g->grants[run].sector);
		for (; g->grants[run].count; g->grants[run].count--, slot++)
			xa_erase(&g->cow_slots, slot);
	}
	mutex_unlock(&g->ctl_mutex);
}

/*
 * The data phase indexes g->cow_slots: it may change only while the kernel
 * holds no CoW location.
 */
static int ctl_attach(struct cow_group *g, const struct cow_msg *m)
{
	lockdep_assert_held(&g->ctl_mutex);
	spin_lock_irq(&g->lock);
	if (g->attached) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -EINVAL, "already attached");
	}
	if (m->arg[0] >= g->chunk_sectors ||
	    (!xa_empty(&g->cow_slots) && m->arg[0] != g->phase)) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -EINVAL, "data phase does not match");
	}
	g->phase = m->arg[0];
	g->attached = true;
	spin_unlock_irq(&g->lock);
	return 0;
}

/*
 * "dmsetup message DEV 0 resize SECTORS": ask the daemon to grow the store,
 * then the device, to @sectors.  It answers with RESIZED and loads a table
 * of the new size; cowctl resize waits for that.  A device never shrinks.
 */
int ctl_request_resize(struct cow_group *g, const char *sectors)
{
	unsigned long long n;

	if (kstrtoull(sectors, 10, &n) || !n || n > COW_MAX_DEV_SECTORS) {
		DMWARN("%s: resize: size in sectors, 1 to %llu", g->ident,
		       COW_MAX_DEV_SECTORS);
		return -EINVAL;
	}
	spin_lock_irq(&g->lock);
	if (n < g->dev_sectors) {
		spin_unlock_irq(&g->lock);
		DMWARN("%s: resize: the device has %llu sectors and cannot shrink",
		       g->ident, (unsigned long long)g->dev_sectors);
		return -EINVAL;
	}
	/* The same size again, before cowd answered: it is on its way. */
	if (n != g->resize_to) {
		g->resize_to = n;
		g->resize_pending = true;
	}
	spin_unlock_irq(&g->lock);
	wake_up_interruptible(&g->wait);
	return 0;
}

static int ctl_handle(struct cow_group *g, const struct cow_msg *m)
{
	if (m->version != COW_PROTO_VERSION)
		return ctl_reject(g, m, -EPROTO, "protocol version mismatch");
	if (m->reserved)
		return ctl_reject(g, m, -EINVAL, "reserved field not zero");
	if (m->flags & ~(m->type == COW_MSG_MAP ? COW_MAP_DATA_VALID : 0))
		return ctl_reject(g, m, -EINVAL, "unknown flag bits");
	if (m->type == COW_MSG_ATTACH)
		return ctl_attach(g, m);
	if (!g->attached)
		return ctl_reject(g, m, -EPROTO, "ATTACH must come first");
	if ((m->type == COW_MSG_MAP || m->type == COW_MSG_LOAD ||
	     m->type == COW_MSG_FAIL || m->type == COW_MSG_DROP) &&
	    m->chunk >= g->nr_chunks)
		return ctl_reject(g, m, -ERANGE, "chunk beyond the device");

	switch (m->type) {
	case COW_MSG_MAP:
		return ctl_map(g, m);
	case COW_MSG_LOAD:
		return ctl_load(g, m);
	case COW_MSG_FAIL:
		return ctl_fail(g, m);
	case COW_MSG_COMMITTED:
		return ctl_committed(g, m);
	case COW_MSG_COMMIT_FAILED:
		return ctl_commit_failed(g, m);
	case COW_MSG_DROP:
		return ctl_drop(g, m);
	case COW_MSG_GRANT:
		return ctl_grant(g, m);
	case COW_MSG_RESIZED:
		return ctl_resized(g, m);
	default:
		return ctl_reject(g, m, -EINVAL, "unknown message type");
	}
}

static ssize_t ctl_write(struct file *file, const char __user *buf,
			 size_t len, loff_t *ppos)
{
	struct cow_group *g = file->private_data;
	struct cow_msg *msgs = g->ctl_msgs;
	size_t done = 0;
	unsigned int noio;
	int r = 0;

	if (!len || len % sizeof(*msgs))
		return -EINVAL;
	/*
	 * The daemon is on the writeback path of the device it serves: what
	 * its messages allocate must not wait for that writeback.
	 */
	noio = memalloc_noio_save();
	/* A batch at a time: a daemon may write hundreds of thousands. */
	while (done < len && !r) {
		size_t chunk = min_t(size_t, len - done,
				     COW_MSG_BATCH * sizeof(*msgs));
		unsigned int i;

		if (mutex_lock_interruptible(&g->ctl_mutex)) {
			r = -ERESTARTSYS;
			break;
		}
		if (g->dead)
			r = -ENODEV;
		else if (copy_from_user(msgs, buf + done, chunk))
			r = -EFAULT;
		for (i = 0; !r && i < chunk / sizeof(*msgs); i++) {
			r = ctl_handle(g, &msgs[i]);
			if (!r)
				done += sizeof(*msgs);
		}
		mutex_unlock(&g->ctl_mutex);
		cond_resched();
	}
	memalloc_noio_restore(noio);
	/* A partial write tells the daemon which message was refused. */
	return done ? done : r;
}

static int ctl_open(struct inode *inode, struct file *file)
{
	struct cow_group *g;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	mutex_lock(&cow_groups_mutex);
	g = xa_load(&cow_minors, iminor(inode));
	if (!g) {
		mutex_unlock(&cow_groups_mutex);
		return -ENODEV;
	}
	spin_lock_irq(&g->lock);
	if (g->ctl_open) {
		spin_unlock_irq(&g->lock);
		mutex_unlock(&cow_groups_mutex);
		return -EBUSY;
	}
	g->ctl_open = true;
	g->attached = false;
	ctl_restart(g);
	spin_unlock_irq(&g->lock);
	kref_get(&g->kref);
	mutex_unlock(&cow_groups_mutex);

	file->private_data = g;
	return stream_open(inode, file);
}

static int ctl_release(struct inode *inode, struct file *file)
{
	struct cow_group *g = file->private_data;

	ctl_drop_grants(g);
	spin_lock_irq(&g->lock);
	g->ctl_open = false;
	g->attached = false;
	g->detached_since = jiffies;
	if (g->faults || !bio_list_empty(&g->commit_wait))
		arm_daemon_timeout(g);
	spin_unlock_irq(&g->lock);
	group_put(g);
	return 0;
}

static const struct file_operations cow_ctl_fops = {
	.owner = THIS_MODULE,
	.open = ctl_open,
	.release = ctl_release,
	.read = ctl_read,
	.write = ctl_write,
	.poll = ctl_poll,
};

/* Give @g a minor and its /dev/dm-cow/IDENT node.  Under cow_groups_mutex. */
int cow_ctl_add(struct cow_group *g)
{
	struct device *dev;
	u32 minor;
	int r;

	lockdep_assert_held(&cow_groups_mutex);
	r = xa_alloc(&cow_minors, &minor, g, XA_LIMIT(0, COW_MAX_GROUPS - 1),
		     GFP_KERNEL);
	if (r)
		return r;
	dev = device_create(cow_class, NULL, cow_ctl_base + minor, g,
			    "dm-cow!%s", g->ident);
	if (IS_ERR(dev)) {
		xa_erase(&cow_minors, minor);
		return PTR_ERR(dev);
	}
	g->minor = minor;
	return 0;
}

/* No new open can find @g after this.  Under cow_groups_mutex. */
void cow_ctl_remove(struct cow_group *g)
{
	lockdep_assert_held(&cow_groups_mutex);
	device_destroy(cow_class, cow_ctl_base + g->minor);
	xa_erase(&cow_minors, g->minor);
}

int cow_ctl_init(void)
{
	int r;

	r = alloc_chrdev_region(&cow_ctl_base, 0, COW_MAX_GROUPS, "dm-cow");
	if (r)
		return r;
	cdev_init(&cow_cdev, &cow_ctl_fops);
	cow_cdev.owner = THIS_MODULE;
	r = cdev_add(&cow_cdev, cow_ctl_base, COW_MAX_GROUPS);
	if (r)
		goto bad_cdev;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	cow_class = class_create("dm-cow");
#else
	cow_class = class_create(THIS_MODULE, "dm-cow");
#endif
	if (IS_ERR(cow_class)) {
		r = PTR_ERR(cow_class);
		goto bad_class;
	}
	return 0;

bad_class:
	cdev_del(&cow_cdev);
bad_cdev:
	unregister_chrdev_region(cow_ctl_base, COW_MAX_GROUPS);
	return r;
}

void cow_ctl_exit(void)
{
	class_destroy(cow_class);
	cdev_del(&cow_cdev);
	unregister_chrdev_region(cow_ctl_base, COW_MAX_GROUPS);
}
