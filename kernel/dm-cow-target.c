// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-cow: a copy-on-write target whose allocation decisions and on-disk
 * metadata live in a userspace daemon (cowd).
 *
 * Table line:
 *   <start> <len> cow <ident> <base_dev> <cow_dev> <chunk_sectors>
 *       [<#feature_args> <arg>...]
 *
 * Device sector S is base sector S.  Reads of chunks that were never written
 * go to the base device (past its end, on a device grown larger by cowctl
 * resize, they read as zeros); chunks in the remap tree go to the CoW
 * device; the first write to any other chunk takes a location the daemon
 * granted in advance, or is queued while a FAULT goes to the daemon through
 * the group's control device (see include/dm-cow-proto.h); the chunk is
 * filled by the write itself if it covers the chunk, or else by one write of
 * the base chunk with the queued writes merged in (a kcopyd copy if the
 * chunk is too large for that, or memory short; zeros past the base).
 *
 * This file is the target: table parsing, the I/O path, status and
 * messages.  The group state is in dm-cow-group.c, the control device in
 * dm-cow-ctl.c, the locking rules in dm-cow.h.
 */

#include "dm-cow.h"

/* ---------------------------------------------------------------------- */
/* Target                                                                  */

static int cow_parse_features(struct dm_target *ti, struct cow_target *ct,
			      unsigned int argc, char **argv)
{
	unsigned int count, i, ms;
	char dummy;

	if (!argc)
		return 0;
	if (sscanf(argv[0], "%u%c", &count, &dummy) != 1) {
		ti->error = "Invalid number of feature arguments";
		return -EINVAL;
	}
	if (count != argc - 1) {
		ti->error = "Feature argument count does not match the arguments given";
		return -EINVAL;
	}
	for (i = 1; i <= count; i++) {
		if (!strncmp(argv[i], "daemon_timeout=", 15)) {
			if (sscanf(argv[i] + 15, "%u%c", &ms, &dummy) != 1 ||
			    !ms || ms > 86400000) {
				ti->error = "Invalid daemon_timeout: milliseconds from 1 to 86400000";
				return -EINVAL;
			}
			ct->daemon_timeout_ms = ms;
		} else {
			ti->error = "Unknown feature argument";
			return -EINVAL;
		}
	}
	return 0;
}


static void cow_event_work(struct work_struct *work)
{
	struct cow_target *ct = container_of(work, struct cow_target, event_work);

	dm_table_event(ct->ti->table);
}

static int cow_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct cow_target *ct;
	struct cow_group *g;
	unsigned int chunk;
	char dummy;
	int r;

	if (argc < 4) {
		ti->error = "Not enough arguments: <ident> <base_dev> <cow_dev> <chunk_sectors> [<#features> <arg>...]";
		return -EINVAL;
	}
	if (!ident_valid(argv[0])) {
		ti->error = "Invalid ident: 1-64 letters, digits, '-', '_' or '.', not starting with '.' or '-'";
		return -EINVAL;
	}
	if (sscanf(argv[3], "%u%c", &chunk, &dummy) != 1 ||
	    chunk < 8 || !is_power_of_2(chunk) || chunk > (1U << 21)) {
		ti->error = "Invalid chunk size: must be a power of two from 8 to 2097152 sectors";
		return -EINVAL;
	}
	ct = kzalloc(sizeof(*ct), GFP_KERNEL);
	if (!ct) {
		ti->error = "Cannot allocate target context";
		return -ENOMEM;
	}
	INIT_WORK(&ct->event_work, cow_event_work);
	r = cow_parse_features(ti, ct, argc - 4, argv + 4);
	if (r) {
		kfree(ct);
		return r;
	}
	r = dm_get_device(ti, argv[2], dm_table_get_mode(ti->table), &ct->cow);
	if (r) {
		ti->error = "Cannot open the CoW device";
		goto bad_cow;
	}
	/*
	 * The base is only ever read, but it is opened with the table's mode
	 * where the device allows that: were it open read-only, a later
	 * dm_get_device() of the same device for writing (the CoW device of
	 * this or another target of the table) would upgrade the mode and
	 * free the dm_dev we hold.  A base that refuses a read-write open is
	 * opened read-only, and then nothing can upgrade it.
	 */
	r = dm_get_device(ti, argv[1], dm_table_get_mode(ti->table), &ct->base);
	if (r)
		r = dm_get_device(ti, argv[1], COW_OPEN_READ, &ct->base);
	if (r) {
		ti->error = "Cannot open the base device";
		goto bad_base;
	}
	/*
	 * The block layer only warns about writes to a read-only disk; a
	 * read-only table must not copy chunks or write the CoW device.
	 */
	ct->read_only = !(dm_table_get_mode(ti->table) & COW_OPEN_WRITE);
	r = -EINVAL;
	if (ct->base->bdev == ct->cow->bdev) {
		ti->error = "The base and the CoW device must differ";
		goto bad_group;
	}
	/* So that device-mapper splits bios at chunk boundaries. */
	if (ti->begin & (chunk - 1)) {
		ti->error = "Target start must be a multiple of the chunk size";
		goto bad_group;
	}
	ct->ti = ti;
	ct->md_dev = disk_devt(dm_disk(dm_table_get_md(ti->table)));
	mutex_lock(&cow_groups_mutex);
	g = group_find(argv[0]);
	if (g) {
		if (g->md_dev != ct->md_dev) {
			mutex_unlock(&cow_groups_mutex);
			ti->error = "Ident already in use by another dm device";
			goto bad_group;
		}
		if (g->base_dev != ct->base->bdev->bd_dev ||
		    g->cow_dev != ct->cow->bdev->bd_dev ||
		    g->chunk_sectors != chunk) {
			mutex_unlock(&cow_groups_mutex);
			ti->error = "Ident already in use with other devices or chunk size";
			goto bad_group;
		}
		/*
		 * The group's chunks end where the device ended at its start,
		 * or where cowd grew it since: the base's growth changes
		 * nothing (its new part is not read).
		 */
		if (ti->begin + ti->len > READ_ONCE(g->dev_sectors)) {
			mutex_unlock(&cow_groups_mutex);
			ti->error = "Target extends beyond the device's size: grow it with cowctl resize";
			goto bad_group;
		}
		kref_get(&g->kref);
	} else {
		g = group_create(argv[0], ct, chunk, &ti->error);
		if (IS_ERR(g)) {
			mutex_unlock(&cow_groups_mutex);
			r = PTR_ERR(g);
			goto bad_group;
		}
	}
	g->targets++;
	ct->group = g;
	spin_lock_irq(&g->lock);
	group_add_target(g, ct);
	spin_unlock_irq(&g->lock);
	mutex_unlock(&cow_groups_mutex);

	r = dm_set_target_max_io_len(ti, chunk);
	if (r) {
		ti->error = "Cannot set the maximum I/O length";
		goto bad_io_len;
	}
	ti->num_flush_bios = 1;
	/*
	 * cow_map_discard() passes discards down to the CoW device only: they
	 * are offered when it takes them, whatever the base can do (a
	 * read-only table refuses them).
	 */
	ct->discard_passdown = !ct->read_only &&
			       bdev_max_discard_sectors(ct->cow->bdev);
	ti->num_discard_bios = ct->discard_passdown;
	ti->discards_supported = ct->discard_passdown;
	ti->num_write_zeroes_bios = 0;
	ti->per_io_data_size = sizeof(struct cow_bio);
	ti->accounts_remapped_io = true;
	ti->private = ct;
	return 0;

bad_io_len:
	group_leave(ct);
bad_group:
	dm_put_device(ti, ct->base);
bad_base:
	dm_put_device(ti, ct->cow);
bad_cow:
	kfree(ct);
	return r;
}

static void cow_dtr(struct dm_target *ti)
{
	struct cow_target *ct = ti->private;

	group_leave(ct);
	dm_put_device(ti, ct->cow);
	dm_put_device(ti, ct->base);
	kfree(ct);
}

/*
 * A FUA write to a mapped chunk, or an empty flush, waits for a commit if
 * any chunk is not committed yet.  Returns what map() returns.
 */
static int hold_fua(struct cow_group *g, struct bio *bio)
{
	lockdep_assert_held(&g->lock);
	if (!(bio->bi_opf & (REQ_FUA | REQ_PREFLUSH)))
		return DM_MAPIO_REMAPPED;
	switch (park_for_commit(g, bio)) {
	case COMMIT_PARKED:
		return DM_MAPIO_SUBMITTED;
	case COMMIT_REQUEUE:
		return DM_MAPIO_REQUEUE;
	default:
		return DM_MAPIO_REMAPPED;
	}
}

/*
 * A read of what the base holds: past the base's end (a grown device)
 * that is zeros, and a read across the end is cut there.
 */
static int cow_map_base(struct cow_group *g, struct bio *bio)
{
	sector_t start = bio->bi_iter.bi_sector;

	if (likely(bio_end_sector(bio) <= g->base_sectors)) {
		bio_set_dev(bio, g->base_bdev);
		return DM_MAPIO_REMAPPED;
	}
	if (start < g->base_sectors) {
		dm_accept_partial_bio(bio, g->base_sectors - start);
		bio_set_dev(bio, g->base_bdev);
		return DM_MAPIO_REMAPPED;
	}
	zero_fill_bio(bio);
	bio_endio(bio);
	return DM_MAPIO_SUBMITTED;
}

/* cow_map_unmapped(): a write found no pending chunk; come with a new one. */
#define COW_MAP_NEED_FRESH (-1)

/*
 * A bio to a chunk that is not in the remap tree.  @fresh is a new pending
 * chunk for a write, or NULL.  Returns what map() returns, or
 * COW_MAP_NEED_FRESH for a write without @fresh to a chunk that is not
 * pending (any more).
 */
static int cow_map_unmapped(struct cow_group *g, struct bio *bio, u64 chunk,
			    struct pending_chunk *fresh)
{
	struct pending_chunk *pc;
	sector_t cow_sector;
	unsigned long flags;
	bool faulted, direct;
	int r;

	spin_lock_irqsave(&g->lock, flags);
	pc = pending_find(g, chunk);
	if (pc && bio_data_dir(bio) == READ && !pc->filled) {
		/*
		 * Until its data lands, no write to the chunk has completed:
		 * it reads as the base, as dm-clone's regions do while they
		 * are hydrated.  (For a MAP_DATA_VALID chunk, one written
		 * before cowd loaded the store, the CoW location holds newer
		 * data; reads before its fault went to the base as well:
		 * only a safe bring-up, cowd resuming the device, avoids
		 * that window.)
		 */
		goto out_base;
	}
	if (pc) {
		/* A noflush suspend must not wait for a daemon. */
		if (pc->state != PENDING_COPYING && group_requeueing(g)) {
			r = DM_MAPIO_REQUEUE;
			goto out_unlock;
		}
		/* Issued later from the work, which may wait. */
		bio->bi_opf &= ~REQ_NOWAIT;
		bio_list_add(&pc->bios, bio);
		r = DM_MAPIO_SUBMITTED;
		goto out_unlock;
	}
	/* The chunk may have become READY since the lock-free look-up. */
	if (remap_lookup(g, chunk, &cow_sector)) {
		r = hold_fua(g, bio);
		if (r != DM_MAPIO_REMAPPED)
			goto out_unlock;
		spin_unlock_irqrestore(&g->lock, flags);
		if (fresh)
			mempool_free(fresh, &g->pending_pool);
		remap_bio_to_cow(g, bio, cow_sector);
		return DM_MAPIO_REMAPPED;
	}
	if (bio_data_dir(bio) == READ)
		goto out_base;	/* a chunk never written */
	if (!fresh) {
		spin_unlock_irqrestore(&g->lock, flags);
		return COW_MAP_NEED_FRESH;
	}
	pc = fresh;
	pc->chunk = chunk;
	pc->since = jiffies;
	/*
	 * On a granted location the fill begins without the daemon: a write
	 * of the whole chunk is the fill, issued from here; otherwise the
	 * work starts it.  Not for REQ_NOWAIT: the CoW device could answer
	 * BLK_STS_AGAIN (a split, no tags), a failed fill; queued, the bio
	 * loses the flag and the work still takes it as the fill.
	 */
	direct = !(bio->bi_opf & REQ_NOWAIT) &&
		 cow_bio_covers_chunk(g, bio, chunk);
	faulted = !pending_take_grant(g, pc);
	if (faulted) {
		if (group_requeueing(g)) {
			xa_release(&g->remaps, chunk);
			r = DM_MAPIO_REQUEUE;
			goto out_unlock;
		}
		pc->state = PENDING_FAULT_QUEUED;
		arm_daemon_timeout(g);
		list_add_tail(&pc->list, &g->fault_queued);
		g->faults++;
	} else if (!direct) {
		list_add_tail(&pc->list, &g->to_fill);
		group_kick(g);
	}
	pending_insert(g, pc);
	fresh = NULL;
	if (!faulted && direct) {
		struct cow_bio *cb = dm_per_bio_data(bio, sizeof(*cb));

		/*
		 * The chunk is COPYING on no list: nothing but this bio's
		 * cow_end_io() -> fill_done() moves or frees it.
		 */
		cb->covering = pc;
		cow_sector = pc->cow_sector;
		spin_unlock_irqrestore(&g->lock, flags);
		remap_bio_to_cow(g, bio, cow_sector);
		return DM_MAPIO_REMAPPED;
	}
	bio->bi_opf &= ~REQ_NOWAIT;
	bio_list_add(&pc->bios, bio);
	spin_unlock_irqrestore(&g->lock, flags);
	if (faulted)
		wake_up_interruptible(&g->wait);
	return DM_MAPIO_SUBMITTED;

out_base:
	spin_unlock_irqrestore(&g->lock, flags);
	return cow_map_base(g, bio);

out_unlock:
	spin_unlock_irqrestore(&g->lock, flags);
	if (fresh)
		mempool_free(fresh, &g->pending_pool);
	return r;
}

/*
 * A pending chunk for a first write; NULL only for a REQ_NOWAIT bio, which
 * must not wait for memory.
 */
static struct pending_chunk *pending_alloc(struct cow_group *g,
					   struct bio *bio)
{
	gfp_t gfp = bio->bi_opf & REQ_NOWAIT ? GFP_NOWAIT : GFP_NOIO;
	struct pending_chunk *pc = mempool_alloc(&g->pending_pool, gfp);

	if (!pc)
		return NULL;
	memset(pc, 0, sizeof(*pc));
	pc->group = g;
	bio_list_init(&pc->bios);
	bio_list_init(&pc->merged);
	INIT_LIST_HEAD(&pc->list);
	return pc;
}

/*
 * A discard, one chunk at a time (device-mapper sends the rest of it in a
 * new bio: with one discard bio per target, dm_accept_partial_bio() may
 * cut it).  Within a mapped chunk it goes down to the chunk's CoW
 * location, whose space the CoW device may give back (a loop device over
 * a file punches a hole, and the range then reads as zeros).  Anywhere
 * else it is done at once, with nothing to do: an unmapped chunk reads
 * the base's data, which is the previous data (as dm-clone does); a
 * pending chunk is being filled, which a discard must not overtake.  No
 * mapping changes, so after a crash the range holds what it held, or
 * what the CoW device made of the discard.
 */
static int cow_map_discard(struct cow_group *g, struct bio *bio)
{
	sector_t offset = bio->bi_iter.bi_sector & (g->chunk_sectors - 1);
	sector_t cow_sector;

	if (bio_sectors(bio) > g->chunk_sectors - offset)
		dm_accept_partial_bio(bio, g->chunk_sectors - offset);
	if (remap_lookup(g, sector_to_chunk(g, bio->bi_iter.bi_sector), &cow_sector)) {
		remap_bio_to_cow(g, bio, cow_sector);
		return DM_MAPIO_REMAPPED;
	}
	bio_endio(bio);
	return DM_MAPIO_SUBMITTED;
}

/*
 * Nothing here sleeps but pending_alloc() for a bio that may wait: the
 * target takes REQ_NOWAIT bios (DM_TARGET_NOWAIT), and a first write or a
 * FUA write only waits for the daemon after map() returned.
 */
static int cow_map(struct dm_target *ti, struct bio *bio)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;
	struct cow_bio *cb = dm_per_bio_data(bio, sizeof(struct cow_bio));
	struct pending_chunk *fresh;
	unsigned long flags;
	void *entry;
	u64 chunk;
	int r;

	cb->covering = NULL;

	if (unlikely(ct->read_only) && op_is_write(bio_op(bio)) && bio_sectors(bio))
		return DM_MAPIO_KILL;
	if (unlikely(bio_op(bio) == REQ_OP_DISCARD))
		return cow_map_discard(g, bio);

	if (unlikely(bio->bi_opf & REQ_PREFLUSH) && !bio_sectors(bio)) {
		spin_lock_irqsave(&g->lock, flags);
		r = hold_fua(g, bio);
		spin_unlock_irqrestore(&g->lock, flags);
		if (r == DM_MAPIO_REMAPPED)
			bio_set_dev(bio, g->cow_bdev);
		return r;
	}

	/*
	 * ti->begin is a multiple of the chunk size and max_io_len is the
	 * chunk size, so device-mapper never sends a bio across a chunk.
	 */
	chunk = sector_to_chunk(g, bio->bi_iter.bi_sector);
	entry = xa_load(&g->remaps, chunk);
	if (xa_is_value(entry)) {
		if (unlikely(bio->bi_opf & REQ_FUA)) {
			spin_lock_irqsave(&g->lock, flags);
			r = hold_fua(g, bio);
			spin_unlock_irqrestore(&g->lock, flags);
			if (r != DM_MAPIO_REMAPPED)
				return r;
		}
		remap_bio_to_cow(g, bio, xa_to_value(entry));
		return DM_MAPIO_REMAPPED;
	}
	if (bio_data_dir(bio) == READ) {
		/*
		 * No remap and no mark: a chunk never written, or one whose
		 * data cannot have landed (no MAP yet), so no write to it
		 * has completed.  A mark was stored before its chunk's data
		 * could land, and stays until the remap replaces it.
		 */
		if (!entry)
			return cow_map_base(g, bio);
		return cow_map_unmapped(g, bio, chunk, NULL);
	}
	/* A write to a pending chunk joins its queue without a new one. */
	if (entry) {
		r = cow_map_unmapped(g, bio, chunk, NULL);
		if (r != COW_MAP_NEED_FRESH)
			return r;
	}
	fresh = pending_alloc(g, bio);
	if (!fresh) {
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	/*
	 * A granted location needs the chunk's remap entry for its mark: no
	 * allocation under g->lock.  An entry reserved in vain stays, empty
	 * (it reads as none), until the chunk is mapped.
	 */
	if (READ_ONCE(g->granted)) {
		/* Without memory for the entry this write faults instead. */
		r = xa_reserve_irq(&g->remaps, chunk,
				   bio->bi_opf & REQ_NOWAIT ?
				   GFP_NOWAIT | __GFP_NOWARN : GFP_NOIO);
	}
	return cow_map_unmapped(g, bio, chunk, fresh);
}

/*
 * A write that covers a fresh chunk (issued by map() on a granted location,
 * or by the work) has filled it, or failed to.
 */
static int cow_end_io(struct dm_target *ti, struct bio *bio,
		      blk_status_t *error)
{
	struct cow_bio *cb = dm_per_bio_data(bio, sizeof(struct cow_bio));
	struct pending_chunk *pc = cb->covering;
	struct cow_group *g;
	unsigned long flags;

	if (!pc)
		return DM_ENDIO_DONE;
	cb->covering = NULL;
	g = pc->group;
	spin_lock_irqsave(&g->lock, flags);
	fill_done(g, pc, *error ? -EIO : 0);
	spin_unlock_irqrestore(&g->lock, flags);
	return DM_ENDIO_DONE;
}

static void cow_status(struct dm_target *ti, status_type_t type,
		       unsigned int status_flags, char *result,
		       unsigned int maxlen)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock_irq(&g->lock);
		DMEMIT("mapped=%llu pending=%u copying=%u commits=%llu daemon=%s rejected=%llu copy_errors=%llu failed=%llu timed_out=%llu dropped=%llu commit_errors=%llu",
		       g->nr_mapped, g->faults, g->copies, g->nr_commits,
		       g->attached ? "attached" : "detached", g->nr_rejected,
		       g->nr_copy_errors, g->nr_failed_faults, g->nr_timed_out,
		       g->nr_dropped, g->nr_commit_errors);
		if (g->full)
			DMEMIT(" full");
		if (g->failing)
			DMEMIT(" failing");
		spin_unlock_irq(&g->lock);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %s %s %u", g->ident, ct->base->name, ct->cow->name,
		       g->chunk_sectors);
		if (ct->daemon_timeout_ms)
			DMEMIT(" 1 daemon_timeout=%u", ct->daemon_timeout_ms);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",ident=%s,base_device=%s,cow_device=%s,chunk_sectors=%u;",
		       g->ident, ct->base->name, ct->cow->name,
		       g->chunk_sectors);
		break;
	}
}

static int cow_message(struct dm_target *ti, unsigned int argc, char **argv,
		       char *result, unsigned int maxlen)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;

	if (argc == 1 && !strcasecmp(argv[0], "commit")) {
		spin_lock_irq(&g->lock);
		g->commit_wanted = true;
		spin_unlock_irq(&g->lock);
		wake_up_interruptible(&g->wait);
		return 0;
	}
	if (argc == 2 && !strcasecmp(argv[0], "resize"))
		return ctl_request_resize(g, argv[1]);
	DMWARN("%s: unknown message; supported: commit, resize SECTORS", g->ident);
	return -EINVAL;
}

/*
 * A noflush suspend (what lvm uses) must not wait for a daemon that may be
 * absent: first writes waiting for a FAULT answer and flushes waiting for a
 * commit go back to device-mapper, which issues them again after resume;
 * until then new ones are handed back at once (DM_MAPIO_REQUEUE).  Their
 * pending chunks stay, without bios, for the daemon to answer.  A flushing
 * suspend waits for them, and for the daemon, as the I/O itself would.
 */
static void cow_presuspend(struct dm_target *ti)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;
	struct bio_list bios = BIO_EMPTY_LIST;
	struct pending_chunk *pc;
	unsigned int held = 0;

	spin_lock_irq(&g->lock);
	if (dm_noflush_suspending(ti)) {
		g->noflush_ti = ti;
		list_for_each_entry(pc, &g->fault_queued, list)
			bio_list_merge(&bios, &pc->bios);
		list_for_each_entry(pc, &g->fault_sent, list)
			bio_list_merge(&bios, &pc->bios);
		list_for_each_entry(pc, &g->fault_queued, list)
			bio_list_init(&pc->bios);
		list_for_each_entry(pc, &g->fault_sent, list)
			bio_list_init(&pc->bios);
		bio_list_merge(&bios, &g->commit_wait);
		bio_list_init(&g->commit_wait);
	} else if (!g->attached) {
		held = g->faults + bio_list_size(&g->commit_wait);
	}
	spin_unlock_irq(&g->lock);
	requeue_bios(&bios);
	if (held)
		DMINFO("%s: suspend waits for cowd: %u writes or flushes wait for it",
		       g->ident, held);
}

/* The suspend is over (done or undone): nothing is requeued any more. */
static void cow_suspend_end(struct dm_target *ti)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;

	spin_lock_irq(&g->lock);
	if (g->noflush_ti == ti)
		g->noflush_ti = NULL;
	spin_unlock_irq(&g->lock);
}

/* The group follows the feature arguments of the table resumed last. */
static void cow_resume(struct dm_target *ti)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;

	spin_lock_irq(&g->lock);
	g->noflush_ti = NULL;
	g->daemon_timeout_ms = ct->daemon_timeout_ms;
	g->event_target = ct;
	spin_unlock_irq(&g->lock);
}

static int cow_iterate_devices(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data)
{
	struct cow_target *ct = ti->private;
	sector_t cow_len = min_t(sector_t, ti->len,
				 bdev_nr_sectors(ct->cow->bdev));
	sector_t base_end = ct->group->base_sectors;
	int r;

	/* Past the base's end a grown device reads zeros, not the base. */
	if (ti->begin < base_end) {
		r = fn(ti, ct->base, ti->begin,
		       min_t(sector_t, ti->len, base_end - ti->begin), data);
		if (r)
			return r;
	}
	return fn(ti, ct->cow, 0, cow_len, data);
}

/*
 * A write of a whole chunk to a fresh chunk needs no copy: say the chunk
 * size is the optimal I/O size, unless what is stacked below is a multiple.
 * Readahead becomes twice io_opt: not for chunks above COW_MAX_IO_OPT.
 */
static void cow_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct cow_target *ct = ti->private;
	unsigned int chunk_bytes = ct->group->chunk_sectors << SECTOR_SHIFT;

	if (chunk_bytes <= COW_MAX_IO_OPT &&
	    (!limits->io_opt || limits->io_opt % chunk_bytes))
		limits->io_opt = chunk_bytes;
	/*
	 * Discards go to the CoW device only, so its limits are theirs, not
	 * the base's; and since each chunk has its own place there, the
	 * device's alignment means nothing to them.
	 */
	if (ct->discard_passdown) {
		struct block_device *cow = ct->cow->bdev;

		limits->discard_granularity = bdev_discard_granularity(cow);
		limits->max_discard_sectors = bdev_max_discard_sectors(cow);
		limits->max_hw_discard_sectors = bdev_max_discard_sectors(cow);
		limits->discard_alignment = 0;
	}
}

static struct target_type cow_target = {
	.name = "cow",
	.version = {1, 3, 0},
	.features = DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = cow_ctr,
	.dtr = cow_dtr,
	.map = cow_map,
	.end_io = cow_end_io,
	.status = cow_status,
	.message = cow_message,
	.presuspend = cow_presuspend,
	.presuspend_undo = cow_suspend_end,
	.postsuspend = cow_suspend_end,
	.resume = cow_resume,
	.iterate_devices = cow_iterate_devices,
	.io_hints = cow_io_hints,
};

/* ---------------------------------------------------------------------- */

static int __init dm_cow_init(void)
{
	int r;

	pending_cache = KMEM_CACHE(pending_chunk, 0);
	if (!pending_cache)
		return -ENOMEM;
	r = -ENOMEM;
	cow_wq = alloc_workqueue("dm-cow", WQ_MEM_RECLAIM, 0);
	if (!cow_wq)
		goto bad_wq;
	r = cow_ctl_init();
	if (r)
		goto bad_ctl;
	cow_zero_init();	/* before any table can fill a chunk */
	r = dm_register_target(&cow_target);
	if (r)
		goto bad_target;
	cow_fault_init();
	return 0;

bad_target:
	cow_ctl_exit();
bad_ctl:
	destroy_workqueue(cow_wq);
bad_wq:
	kmem_cache_destroy(pending_cache);
	return r;
}

static void __exit dm_cow_exit(void)
{
	cow_fault_exit();
	dm_unregister_target(&cow_target);
	cow_ctl_exit();
	destroy_workqueue(cow_wq);
	kmem_cache_destroy(pending_cache);
}

module_init(dm_cow_init);
module_exit(dm_cow_exit);

MODULE_DESCRIPTION(DM_NAME " copy-on-write target with a userspace allocator");
MODULE_AUTHOR("dm-cow developers");
MODULE_LICENSE("GPL");
