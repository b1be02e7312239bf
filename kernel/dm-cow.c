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
 * go to the base device; chunks in the remap tree go to the CoW device; the
 * first write to any other chunk is queued and a FAULT goes to the daemon
 * through the group's control device (see include/dm-cow-proto.h).
 *
 * All targets with the same ident share one struct cow_group.
 */

#include <linux/device-mapper.h>
#include <linux/dm-kcopyd.h>
#include <linux/module.h>
#include <linux/init.h>
#include <linux/slab.h>
#include <linux/mempool.h>
#include <linux/xarray.h>
#include <linux/rbtree.h>
#include <linux/cdev.h>
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <linux/wait.h>
#include <linux/capability.h>
#include <linux/kdev_t.h>
#include <linux/version.h>
#include <linux/blkdev.h>
#include <linux/ctype.h>

#include "dm-cow-proto.h"

#define DM_MSG_PREFIX "cow"

#define COW_MAX_GROUPS 1024	/* minors of the control-device region */
#define COW_MIN_PENDING 64	/* mempool reserve of pending chunks */
#define COW_MAX_COPIES 64	/* kcopyd copies in flight per group */
#define COW_MSG_BATCH 64	/* messages per read()/write() step */

/* ------------------------------------------------------------------------ */

enum pending_state {
	PENDING_FAULT_QUEUED,	/* FAULT not yet read by a daemon */
	PENDING_FAULT_SENT,	/* FAULT read, waiting for MAP/FAIL */
	PENDING_COPYING,	/* MAP accepted; copy or covering write in flight */
	PENDING_READY,		/* data in place; READY not yet read */
};

/*
 * A chunk between its first write and the moment its data is in place.
 * While it exists every bio to the chunk waits on @bios.
 */
struct pending_chunk {
	struct rb_node node;		/* in group->pending, while not READY */
	struct list_head list;		/* on one of the group's lists */
	struct cow_group *group;
	u64 chunk;
	sector_t cow_sector;
	enum pending_state state;
	bool data_valid;		/* MAP_DATA_VALID: no copy */
	bool copy_tried;		/* a kcopyd copy was started */
	int error;			/* copy or covering-write error */
	u64 ready_seq;
	unsigned long since;		/* jiffies when the fault was raised */
	struct bio_list bios;
};

struct cow_group {
	struct list_head list;		/* on cow_groups, under cow_groups_mutex */
	struct kref kref;		/* one per target, one per open ctl file */
	unsigned int targets;		/* under cow_groups_mutex */
	char ident[COW_IDENT_MAX + 1];
	unsigned int minor;

	dev_t md_dev;			/* the one dm device the group serves */
	dev_t base_dev, cow_dev;
	/* valid while any target holds its dm_devs open */
	struct block_device *base_bdev, *cow_bdev;
	sector_t base_sectors;
	u32 chunk_sectors;
	u32 chunk_shift;
	u64 nr_chunks;

	/*
	 * chunk -> xa_mk_value(CoW sector).  Loaded under RCU on the I/O path;
	 * entries are reserved at MAP time (process context) so that storing
	 * them when the copy completes never allocates.
	 */
	struct xarray remaps;
	/* (CoW sector - phase) >> chunk_shift -> chunk; under ctl_mutex */
	struct xarray cow_slots;
	sector_t phase;

	struct dm_kcopyd_client *kcopyd;
	mempool_t pending_pool;
	struct work_struct work;
	/* Fails faults and flushes that waited too long for a daemon. */
	struct delayed_work timeout_work;
	unsigned int daemon_timeout_ms;	/* 0: wait forever; under lock */

	/*
	 * Protects everything below.  Taken from bio completion, so always
	 * with interrupts disabled; never held across anything that sleeps.
	 */
	spinlock_t lock;
	struct rb_root pending;		/* pending chunks not yet READY */
	struct list_head fault_queued;	/* PENDING_FAULT_QUEUED */
	struct list_head fault_sent;	/* PENDING_FAULT_SENT */
	struct list_head copy_wait;	/* COPYING, waiting for a copy slot */
	struct list_head copy_done;	/* COPYING, copy or write finished */
	struct list_head ready;		/* READY, message not yet read */
	struct bio_list commit_wait;	/* flush/FUA bios waiting for a commit */
	struct bio_list commit_released;
	u64 commit_wait_seq;		/* highest seq a waiter needs */
	/*
	 * ready_seq numbers chunks in the order their data landed (assigned
	 * when the fill completes, before the READY message is queued, since
	 * a covering write has completed to its submitter by then); READY
	 * messages go out in that order, so "every READY <= seq" is a prefix.
	 */
	u64 ready_seq;
	u64 committed_seq;		/* daemon: READY <= this are durable */
	unsigned int filled_unqueued;	/* seq assigned, READY not queued */
	u64 replay_next;		/* next chunk to replay as READY */
	u64 replay_seq;			/* ready_seq when the replay began */
	bool replaying;
	bool hello_pending;
	bool commit_wanted;
	bool ctl_open;
	bool attached;
	bool dead;			/* no target left */
	bool full;			/* the daemon refused a fault: no space */
	unsigned int copies;		/* kcopyd copies in flight */
	unsigned int faults;		/* pending chunks in FAULT states */
	unsigned long detached_since;	/* jiffies when the last daemon left */
	unsigned long commit_wait_since; /* jiffies of the oldest commit waiter */

	/* counters, under lock */
	u64 nr_mapped;
	u64 nr_commits;
	u64 nr_rejected;
	u64 nr_copy_errors;
	u64 nr_failed_faults;
	u64 nr_timed_out;
	u64 nr_dropped;
	/*
	 * Targets of the live table, by ti->begin; under lock.  They belong to
	 * one table, so they do not overlap.
	 */
	struct rb_root live_targets;

	struct mutex ctl_mutex;		/* serialises control-device writers */
	wait_queue_head_t wait;		/* readers and pollers */
};

/* Open modes became blk_mode_t in 6.5. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#define COW_OPEN_READ BLK_OPEN_READ
#define COW_OPEN_WRITE BLK_OPEN_WRITE
#else
#define COW_OPEN_READ FMODE_READ
#define COW_OPEN_WRITE FMODE_WRITE
#endif

struct cow_target {
	struct rb_node live_node;	/* in group->live_targets while live */
	struct dm_target *ti;
	bool live;			/* its table is resumed; under g->lock */
	struct cow_group *group;
	struct dm_dev *base;
	struct dm_dev *cow;
	unsigned int daemon_timeout_ms;	/* feature argument, 0 if not given */
	bool read_only;			/* the table is read-only: refuse writes */
	dev_t md_dev;
};

/* per-bio data */
struct cow_bio {
	struct pending_chunk *covering;	/* whole-chunk write of a fresh chunk */
};

static DEFINE_MUTEX(cow_groups_mutex);
static LIST_HEAD(cow_groups);
static DEFINE_XARRAY_ALLOC(cow_minors);	/* minor -> group, under the mutex */
static dev_t cow_ctl_base;
static struct cdev cow_cdev;
static struct class *cow_class;
static struct kmem_cache *pending_cache;
static struct workqueue_struct *cow_wq;

/* ---------------------------------------------------------------------- */
/* Geometry helpers                                                        */

static inline u64 sector_to_chunk(struct cow_group *g, sector_t s)
{
	return s >> g->chunk_shift;
}

static inline sector_t chunk_to_sector(struct cow_group *g, u64 chunk)
{
	return (sector_t)chunk << g->chunk_shift;
}

/* Length of a chunk: the last chunk of the base may be partial. */
static sector_t chunk_len(struct cow_group *g, u64 chunk)
{
	sector_t start = chunk_to_sector(g, chunk);

	return min_t(sector_t, g->chunk_sectors, g->base_sectors - start);
}

/* ---------------------------------------------------------------------- */
/* Pending chunks                                                          */

static struct pending_chunk *pending_find(struct cow_group *g, u64 chunk)
{
	struct rb_node *n = g->pending.rb_node;

	while (n) {
		struct pending_chunk *pc = rb_entry(n, struct pending_chunk, node);

		if (chunk < pc->chunk)
			n = n->rb_left;
		else if (chunk > pc->chunk)
			n = n->rb_right;
		else
			return pc;
	}
	return NULL;
}

static void pending_insert(struct cow_group *g, struct pending_chunk *new)
{
	struct rb_node **p = &g->pending.rb_node, *parent = NULL;

	while (*p) {
		struct pending_chunk *pc = rb_entry(*p, struct pending_chunk, node);

		parent = *p;
		if (new->chunk < pc->chunk)
			p = &(*p)->rb_left;
		else
			p = &(*p)->rb_right;
	}
	rb_link_node(&new->node, parent, p);
	rb_insert_color(&new->node, &g->pending);
}

static bool remap_lookup(struct cow_group *g, u64 chunk, sector_t *cow_sector)
{
	void *entry = xa_load(&g->remaps, chunk);

	if (!xa_is_value(entry))
		return false;
	*cow_sector = xa_to_value(entry);
	return true;
}

static void remap_bio_to_cow(struct cow_group *g, struct bio *bio,
			     sector_t cow_sector)
{
	sector_t offset = bio->bi_iter.bi_sector & (g->chunk_sectors - 1);

	bio_set_dev(bio, g->cow_bdev);
	bio->bi_iter.bi_sector = cow_sector + offset;
}

/* ---------------------------------------------------------------------- */
/* Waiting for a daemon: daemon_timeout                                    */

/*
 * With daemon_timeout=<ms>, a first write or a flush that has waited that
 * long while no daemon was attached fails with EIO instead of waiting
 * forever.  Caller holds g->lock.
 */
static void arm_daemon_timeout(struct cow_group *g)
{
	if (g->daemon_timeout_ms && !g->attached)
		queue_delayed_work(cow_wq, &g->timeout_work,
				   msecs_to_jiffies(min(g->daemon_timeout_ms / 4 + 1, 1000U)));
}

static bool waited_too_long(struct cow_group *g, unsigned long since)
{
	if (time_before(since, g->detached_since))
		since = g->detached_since;
	return time_after(jiffies, since + msecs_to_jiffies(g->daemon_timeout_ms));
}

static void fail_bios(struct bio_list *bios, blk_status_t status)
{
	struct bio *bio;

	while ((bio = bio_list_pop(bios))) {
		bio->bi_status = status;
		bio_endio(bio);
	}
}

static void expire_list(struct cow_group *g, struct list_head *head,
			struct bio_list *bios, struct list_head *freed)
{
	struct pending_chunk *pc, *tmp;

	list_for_each_entry_safe(pc, tmp, head, list) {
		if (!waited_too_long(g, pc->since))
			continue;
		rb_erase(&pc->node, &g->pending);
		list_move_tail(&pc->list, freed);
		bio_list_merge(bios, &pc->bios);
		g->faults--;
		g->nr_timed_out++;
	}
}

static void daemon_timeout_work(struct work_struct *work)
{
	struct cow_group *g = container_of(to_delayed_work(work),
					   struct cow_group, timeout_work);
	struct bio_list bios = BIO_EMPTY_LIST;
	struct pending_chunk *pc, *tmp;
	LIST_HEAD(freed);
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	if (g->attached || !g->daemon_timeout_ms) {
		spin_unlock_irqrestore(&g->lock, flags);
		return;
	}
	expire_list(g, &g->fault_queued, &bios, &freed);
	expire_list(g, &g->fault_sent, &bios, &freed);
	if (!bio_list_empty(&g->commit_wait) &&
	    waited_too_long(g, g->commit_wait_since)) {
		bio_list_merge(&bios, &g->commit_wait);
		bio_list_init(&g->commit_wait);
	}
	if (g->faults || !bio_list_empty(&g->commit_wait))
		arm_daemon_timeout(g);
	spin_unlock_irqrestore(&g->lock, flags);

	if (!bio_list_empty(&bios))
		DMWARN_LIMIT("%s: no daemon for %u ms: failing waiting I/O",
			     g->ident, g->daemon_timeout_ms);
	fail_bios(&bios, BLK_STS_IOERR);
	list_for_each_entry_safe(pc, tmp, &freed, list) {
		list_del(&pc->list);
		mempool_free(pc, &g->pending_pool);
	}
}

/* ---------------------------------------------------------------------- */
/* Commit waiters: empty flushes and FUA writes                            */

/*
 * A flush (or a FUA write) may only complete once every chunk that became
 * READY before it is committed by the daemon: otherwise a power cut after
 * the flush could lose the mapping of data the flush promised durable.
 * The caller holds g->lock.  Returns true if @bio was parked.
 */
static bool park_for_commit(struct cow_group *g, struct bio *bio)
{
	if (g->committed_seq >= g->ready_seq)
		return false;
	if (bio_list_empty(&g->commit_wait))
		g->commit_wait_since = jiffies;
	bio_list_add(&g->commit_wait, bio);
	arm_daemon_timeout(g);
	g->commit_wait_seq = g->ready_seq;
	g->commit_wanted = true;
	wake_up_interruptible(&g->wait);
	return true;
}

/* Issue a bio released by a commit (or one that needed none). */
static void issue_committed_bio(struct cow_group *g, struct bio *bio)
{
	sector_t cow_sector;

	if (bio_sectors(bio)) {
		u64 chunk = sector_to_chunk(g, bio->bi_iter.bi_sector);

		if (WARN_ON_ONCE(!remap_lookup(g, chunk, &cow_sector))) {
			bio_io_error(bio);
			return;
		}
		remap_bio_to_cow(g, bio, cow_sector);
	} else {
		bio_set_dev(bio, g->cow_bdev);
	}
	dm_submit_bio_remap(bio, NULL);
}

/* ---------------------------------------------------------------------- */
/* Copies                                                                  */

/*
 * The chunk's CoW location has been filled (by a copy, by a covering write
 * or not at all for DATA_VALID), or failed to.  Caller holds g->lock.
 */
static void fill_done(struct cow_group *g, struct pending_chunk *pc, int error)
{
	pc->error = error;
	if (!error) {
		pc->ready_seq = ++g->ready_seq;
		g->filled_unqueued++;
	}
	list_add_tail(&pc->list, &g->copy_done);
}

static void copy_complete(int read_err, unsigned long write_err, void *context)
{
	struct pending_chunk *pc = context;
	struct cow_group *g = pc->group;
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	g->copies--;
	fill_done(g, pc, read_err || write_err ? -EIO : 0);
	spin_unlock_irqrestore(&g->lock, flags);
	queue_work(cow_wq, &g->work);
}

static void start_copy(struct cow_group *g, struct pending_chunk *pc)
{
	struct dm_io_region from, to;

	from.bdev = g->base_bdev;
	from.sector = chunk_to_sector(g, pc->chunk);
	from.count = chunk_len(g, pc->chunk);
	to.bdev = g->cow_bdev;
	to.sector = pc->cow_sector;
	to.count = from.count;
	pc->copy_tried = true;
	pc->error = 0;
	dm_kcopyd_copy(g->kcopyd, &from, 1, &to, 0, copy_complete, pc);
}

/*
 * A queued write that covers the whole chunk makes the copy unnecessary:
 * find one and take it off the queue.  Caller holds g->lock.
 */
static struct bio *take_covering_write(struct cow_group *g,
				       struct pending_chunk *pc)
{
	struct bio_list keep = BIO_EMPTY_LIST;
	struct bio *bio, *found = NULL;
	sector_t start = chunk_to_sector(g, pc->chunk);
	sector_t len = chunk_len(g, pc->chunk);

	while ((bio = bio_list_pop(&pc->bios))) {
		if (!found && bio_data_dir(bio) == WRITE &&
		    !(bio->bi_opf & REQ_FUA) &&
		    bio->bi_iter.bi_sector == start && bio_sectors(bio) == len)
			found = bio;
		else
			bio_list_add(&keep, bio);
	}
	pc->bios = keep;
	return found;
}

/*
 * Begin filling the CoW location of a freshly mapped chunk, within the
 * copy budget; called from process context without g->lock.
 */
static void fill_chunk(struct cow_group *g, struct pending_chunk *pc)
{
	struct bio *cover;
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	if (pc->data_valid) {
		fill_done(g, pc, 0);
		spin_unlock_irqrestore(&g->lock, flags);
		queue_work(cow_wq, &g->work);
		return;
	}
	cover = take_covering_write(g, pc);
	if (!cover && g->copies >= COW_MAX_COPIES) {
		list_add_tail(&pc->list, &g->copy_wait);
		spin_unlock_irqrestore(&g->lock, flags);
		return;
	}
	if (!cover)
		g->copies++;
	spin_unlock_irqrestore(&g->lock, flags);

	if (cover) {
		struct cow_bio *cb = dm_per_bio_data(cover, sizeof(struct cow_bio));

		cb->covering = pc;
		remap_bio_to_cow(g, cover, pc->cow_sector);
		dm_submit_bio_remap(cover, NULL);
	} else {
		start_copy(g, pc);
	}
}

/*
 * The chunk's data is in place (or could not be put there): publish the
 * mapping and let the queued bios through.  Process context.
 */
static void chunk_filled(struct cow_group *g, struct pending_chunk *pc)
{
	struct bio_list bios, go = BIO_EMPTY_LIST;
	sector_t cow_sector;
	struct bio *bio;
	unsigned long flags;

	if (pc->error && !pc->copy_tried) {
		/* The covering write failed: fall back to a real copy. */
		spin_lock_irqsave(&g->lock, flags);
		g->copies++;
		spin_unlock_irqrestore(&g->lock, flags);
		start_copy(g, pc);
		return;
	}

	if (pc->error) {
		DMERR_LIMIT("%s: copy of chunk %llu failed; failing its I/O",
			    g->ident, pc->chunk);
		xa_release(&g->remaps, pc->chunk);
		mutex_lock(&g->ctl_mutex);
		xa_erase(&g->cow_slots, (pc->cow_sector - g->phase) >> g->chunk_shift);
		mutex_unlock(&g->ctl_mutex);
		spin_lock_irqsave(&g->lock, flags);
		rb_erase(&pc->node, &g->pending);
		bios = pc->bios;
		bio_list_init(&pc->bios);
		g->nr_copy_errors++;
		spin_unlock_irqrestore(&g->lock, flags);
		fail_bios(&bios, BLK_STS_IOERR);
		mempool_free(pc, &g->pending_pool);
		return;
	}

	/* Reserved at MAP time: this store does not allocate. */
	xa_store(&g->remaps, pc->chunk, xa_mk_value(pc->cow_sector), GFP_NOIO);

	/*
	 * Once on g->ready, a daemon's read() may free @pc at any moment:
	 * take what the queued bios need first.
	 */
	cow_sector = pc->cow_sector;
	spin_lock_irqsave(&g->lock, flags);
	rb_erase(&pc->node, &g->pending);
	bios = pc->bios;
	bio_list_init(&pc->bios);
	pc->state = PENDING_READY;
	g->filled_unqueued--;
	g->nr_mapped++;
	list_add_tail(&pc->list, &g->ready);
	while ((bio = bio_list_pop(&bios))) {
		if ((bio->bi_opf & REQ_FUA) && park_for_commit(g, bio))
			continue;
		bio_list_add(&go, bio);
	}
	spin_unlock_irqrestore(&g->lock, flags);
	wake_up_interruptible(&g->wait);

	while ((bio = bio_list_pop(&go))) {
		remap_bio_to_cow(g, bio, cow_sector);
		dm_submit_bio_remap(bio, NULL);
	}
}

static void cow_work(struct work_struct *work)
{
	struct cow_group *g = container_of(work, struct cow_group, work);
	struct pending_chunk *pc, *tmp;
	struct bio_list released;
	struct bio *bio;
	LIST_HEAD(done);
	LIST_HEAD(start);
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	list_splice_init(&g->copy_done, &done);
	while (g->copies < COW_MAX_COPIES && !list_empty(&g->copy_wait)) {
		pc = list_first_entry(&g->copy_wait, struct pending_chunk, list);
		list_move_tail(&pc->list, &start);
		g->copies++;
	}
	released = g->commit_released;
	bio_list_init(&g->commit_released);
	spin_unlock_irqrestore(&g->lock, flags);

	list_for_each_entry_safe(pc, tmp, &start, list) {
		list_del_init(&pc->list);
		start_copy(g, pc);
	}
	list_for_each_entry_safe(pc, tmp, &done, list) {
		list_del_init(&pc->list);
		chunk_filled(g, pc);
	}
	while ((bio = bio_list_pop(&released)))
		issue_committed_bio(g, bio);
}

/* ---------------------------------------------------------------------- */
/* Groups                                                                  */

static bool ident_valid(const char *ident)
{
	size_t len = strlen(ident), i;

	if (!len || len > COW_IDENT_MAX || ident[0] == '.' || ident[0] == '-')
		return false;
	for (i = 0; i < len; i++) {
		char c = ident[i];

		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return false;
	}
	return true;
}

static struct cow_group *group_find(const char *ident)
{
	struct cow_group *g;

	list_for_each_entry(g, &cow_groups, list)
		if (!strcmp(g->ident, ident))
			return g;
	return NULL;
}

static void group_free(struct kref *kref)
{
	struct cow_group *g = container_of(kref, struct cow_group, kref);
	struct pending_chunk *pc, *tmp;

	/* Only READY entries whose message was never read can be left. */
	list_for_each_entry_safe(pc, tmp, &g->ready, list) {
		list_del(&pc->list);
		mempool_free(pc, &g->pending_pool);
	}
	WARN_ON(!RB_EMPTY_ROOT(&g->pending));
	xa_destroy(&g->remaps);
	xa_destroy(&g->cow_slots);
	mempool_exit(&g->pending_pool);
	kfree(g);
}

static void group_put(struct cow_group *g)
{
	kref_put(&g->kref, group_free);
}

static struct cow_group *group_create(const char *ident, struct cow_target *ct,
				      u32 chunk_sectors, char **error)
{
	struct device *ctl_dev;
	struct cow_group *g;
	u32 minor;
	int r;

	g = kzalloc(sizeof(*g), GFP_KERNEL);
	if (!g) {
		*error = "Cannot allocate group";
		return ERR_PTR(-ENOMEM);
	}
	kref_init(&g->kref);
	strscpy(g->ident, ident, sizeof(g->ident));
	g->live_targets = RB_ROOT;
	g->md_dev = ct->md_dev;
	g->base_dev = ct->base->bdev->bd_dev;
	g->cow_dev = ct->cow->bdev->bd_dev;
	g->base_bdev = ct->base->bdev;
	g->cow_bdev = ct->cow->bdev;
	g->base_sectors = bdev_nr_sectors(g->base_bdev);
	g->chunk_sectors = chunk_sectors;
	g->chunk_shift = __ffs(chunk_sectors);
	g->nr_chunks = DIV_ROUND_UP_ULL(g->base_sectors, chunk_sectors);
	xa_init(&g->remaps);
	xa_init(&g->cow_slots);
	spin_lock_init(&g->lock);
	g->pending = RB_ROOT;
	INIT_LIST_HEAD(&g->fault_queued);
	INIT_LIST_HEAD(&g->fault_sent);
	INIT_LIST_HEAD(&g->copy_wait);
	INIT_LIST_HEAD(&g->copy_done);
	INIT_LIST_HEAD(&g->ready);
	bio_list_init(&g->commit_wait);
	bio_list_init(&g->commit_released);
	mutex_init(&g->ctl_mutex);
	init_waitqueue_head(&g->wait);
	INIT_WORK(&g->work, cow_work);
	INIT_DELAYED_WORK(&g->timeout_work, daemon_timeout_work);
	g->detached_since = jiffies;

	r = mempool_init_slab_pool(&g->pending_pool, COW_MIN_PENDING,
				   pending_cache);
	if (r) {
		*error = "Cannot allocate pending-chunk pool";
		goto bad_pool;
	}
	g->kcopyd = dm_kcopyd_client_create(NULL);
	if (IS_ERR(g->kcopyd)) {
		r = PTR_ERR(g->kcopyd);
		*error = "Cannot create kcopyd client";
		goto bad_kcopyd;
	}
	r = xa_alloc(&cow_minors, &minor, g, XA_LIMIT(0, COW_MAX_GROUPS - 1),
		     GFP_KERNEL);
	if (r) {
		*error = "Too many dm-cow groups";
		goto bad_minor;
	}
	g->minor = minor;
	ctl_dev = device_create(cow_class, NULL, cow_ctl_base + minor, g,
				   "dm-cow!%s", ident);
	if (IS_ERR(ctl_dev)) {
		r = PTR_ERR(ctl_dev);
		*error = "Cannot create the control device";
		goto bad_dev;
	}
	list_add(&g->list, &cow_groups);
	return g;

bad_dev:
	xa_erase(&cow_minors, minor);
bad_minor:
	dm_kcopyd_client_destroy(g->kcopyd);
bad_kcopyd:
	mempool_exit(&g->pending_pool);
bad_pool:
	kfree(g);
	return ERR_PTR(r);
}

/* The last target is gone: no I/O can arrive any more.  Under the mutex. */
static void group_kill(struct cow_group *g)
{
	unsigned long flags;

	list_del(&g->list);
	device_destroy(cow_class, cow_ctl_base + g->minor);
	xa_erase(&cow_minors, g->minor);
	cancel_delayed_work_sync(&g->timeout_work);
	flush_work(&g->work);
	dm_kcopyd_client_destroy(g->kcopyd);
	spin_lock_irqsave(&g->lock, flags);
	g->dead = true;
	g->base_bdev = NULL;
	g->cow_bdev = NULL;
	spin_unlock_irqrestore(&g->lock, flags);
	wake_up_interruptible(&g->wait);
}

/* ---------------------------------------------------------------------- */
/* Control device                                                          */

static void msg_init(struct cow_msg *m, u16 type)
{
	memset(m, 0, sizeof(*m));
	m->version = COW_PROTO_VERSION;
	m->type = type;
}

static bool ctl_has_messages(struct cow_group *g)
{
	return g->hello_pending || g->replaying || !list_empty(&g->ready) ||
	       !list_empty(&g->fault_queued) || g->commit_wanted;
}

/*
 * Fill @msgs with up to @max messages, in the order that keeps the protocol
 * sound: READY before the COMMIT that must cover it.  Caller holds g->lock.
 * READY entries handed out are moved to @freed for the caller to free.
 */
static unsigned int ctl_collect(struct cow_group *g, struct cow_msg *msgs,
				unsigned int max, struct list_head *freed)
{
	struct pending_chunk *pc, *tmp;
	unsigned int n = 0;
	void *entry;

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
	while (g->replaying && n < max) {
		unsigned long index = g->replay_next;

		entry = xa_find(&g->remaps, &index, ULONG_MAX, XA_PRESENT);
		if (!entry) {
			g->replaying = false;
			break;
		}
		g->replay_next = index + 1;
		if (!xa_is_value(entry))
			continue;
		msg_init(&msgs[n], COW_MSG_READY);
		msgs[n].flags = COW_READY_REPLAY;
		msgs[n].chunk = index;
		msgs[n].sector = xa_to_value(entry);
		msgs[n].seq = g->replay_seq;
		n++;
	}
	list_for_each_entry_safe(pc, tmp, &g->ready, list) {
		if (n >= max)
			break;
		msg_init(&msgs[n], COW_MSG_READY);
		msgs[n].chunk = pc->chunk;
		msgs[n].sector = pc->cow_sector;
		msgs[n].seq = pc->ready_seq;
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
	/* A COMMIT must follow every READY it is meant to cover. */
	if (g->commit_wanted && n < max && !g->replaying &&
	    list_empty(&g->ready) && !g->filled_unqueued) {
		msg_init(&msgs[n], COW_MSG_COMMIT);
		msgs[n].seq = g->ready_seq;
		n++;
		g->commit_wanted = false;
	}
	return n;
}

static ssize_t ctl_read(struct file *file, char __user *buf, size_t len,
			loff_t *ppos)
{
	struct cow_group *g = file->private_data;
	struct cow_msg *msgs;
	struct pending_chunk *pc, *tmp;
	unsigned int max = min_t(size_t, len / sizeof(*msgs), COW_MSG_BATCH);
	unsigned int n;
	LIST_HEAD(freed);
	ssize_t r;

	if (!max)
		return -EINVAL;
	msgs = kmalloc_array(max, sizeof(*msgs), GFP_KERNEL);
	if (!msgs)
		return -ENOMEM;
	for (;;) {
		spin_lock_irq(&g->lock);
		n = ctl_collect(g, msgs, max, &freed);
		if (n || g->dead) {
			spin_unlock_irq(&g->lock);
			break;
		}
		spin_unlock_irq(&g->lock);
		if (file->f_flags & O_NONBLOCK) {
			r = -EAGAIN;
			goto out;
		}
		r = wait_event_interruptible(g->wait,
					     ctl_has_messages(g) || g->dead);
		if (r)
			goto out;
	}
	list_for_each_entry_safe(pc, tmp, &freed, list) {
		list_del(&pc->list);
		mempool_free(pc, &g->pending_pool);
	}
	/*
	 * Messages lost to a bad buffer are not lost for good: FAULTs and
	 * READYs are sent again when a daemon re-opens the device.
	 */
	r = n * sizeof(*msgs);
	if (copy_to_user(buf, msgs, r))
		r = -EFAULT;
out:
	kfree(msgs);
	return r;
}

static __poll_t ctl_poll(struct file *file, poll_table *wait)
{
	struct cow_group *g = file->private_data;
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	poll_wait(file, &g->wait, wait);
	spin_lock_irq(&g->lock);
	if (ctl_has_messages(g))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (g->dead)
		mask |= EPOLLHUP;
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

/* Validate a CoW location for @chunk; returns its slot or a negative error. */
static long ctl_check_location(struct cow_group *g, const struct cow_msg *m,
			       const char **why)
{
	sector_t cow_size = bdev_nr_sectors(g->cow_bdev);
	sector_t len = chunk_len(g, m->chunk);

	if (m->sector < g->phase ||
	    ((m->sector - g->phase) & (g->chunk_sectors - 1))) {
		*why = "CoW location not aligned to the daemon's data phase";
		return -EINVAL;
	}
	if (m->sector > cow_size || cow_size - m->sector < len) {
		*why = "CoW location outside the CoW device";
		return -ERANGE;
	}
	return (m->sector - g->phase) >> g->chunk_shift;
}

/*
 * Take CoW slot @slot for m->chunk.  Returns 1 if newly taken, 0 if the
 * chunk holds it already (a reload dropped its remap, the location stayed
 * its own), or a negative error: -EEXIST for another chunk's location.
 */
static int claim_slot(struct cow_group *g, const struct cow_msg *m, long slot)
{
	int r = xa_insert(&g->cow_slots, slot, xa_mk_value(m->chunk), GFP_KERNEL);

	if (!r)
		return 1;
	if (r == -EBUSY && xa_load(&g->cow_slots, slot) == xa_mk_value(m->chunk))
		return 0;
	if (r == -EBUSY)
		return ctl_reject(g, m, -EEXIST,
				  "CoW location inside another mapping");
	return r;
}

static int ctl_map(struct cow_group *g, const struct cow_msg *m)
{
	struct pending_chunk *pc;
	const char *why = NULL;
	int claimed, r;
	long slot;

	spin_lock_irq(&g->lock);
	pc = pending_find(g, m->chunk);
	if (!pc || pc->state != PENDING_FAULT_SENT) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -ENOENT, "chunk was not asked for");
	}
	spin_unlock_irq(&g->lock);

	slot = ctl_check_location(g, m, &why);
	if (slot < 0)
		return ctl_reject(g, m, slot, why);
	claimed = claim_slot(g, m, slot);
	if (claimed < 0)
		return claimed;
	r = xa_reserve(&g->remaps, m->chunk, GFP_KERNEL);
	if (r) {
		if (claimed)
			xa_erase(&g->cow_slots, slot);
		return r;
	}

	spin_lock_irq(&g->lock);
	pc->state = PENDING_COPYING;
	g->full = false;
	pc->cow_sector = m->sector;
	pc->data_valid = m->flags & COW_MAP_DATA_VALID;
	list_del_init(&pc->list);
	g->faults--;
	spin_unlock_irq(&g->lock);
	fill_chunk(g, pc);
	return 0;
}

static int ctl_load(struct cow_group *g, const struct cow_msg *m)
{
	struct pending_chunk *pc;
	const char *why = NULL;
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
	slot = ctl_check_location(g, m, &why);
	if (slot < 0)
		return ctl_reject(g, m, slot, why);
	claimed = claim_slot(g, m, slot);
	if (claimed < 0)
		return claimed;

	/*
	 * A chunk with a pending fault must be answered with MAP (DATA_VALID)
	 * instead.  Only ctl_map(), under the ctl_mutex we hold, reserves
	 * remap entries, so the reservation below is ours to release.  The
	 * entry is published under g->lock: a bio that misses the pending
	 * tree re-reads the remaps under the same lock.
	 */
	r = xa_reserve(&g->remaps, m->chunk, GFP_KERNEL);
	if (r) {
		if (claimed)
			xa_erase(&g->cow_slots, slot);
		return r;
	}
	spin_lock_irq(&g->lock);
	if (pending_find(g, m->chunk)) {
		spin_unlock_irq(&g->lock);
		xa_release(&g->remaps, m->chunk);
		if (claimed)
			xa_erase(&g->cow_slots, slot);
		return ctl_reject(g, m, -EBUSY, "chunk has a pending fault");
	}
	xa_store(&g->remaps, m->chunk, xa_mk_value(m->sector), GFP_ATOMIC);
	g->nr_mapped++;
	spin_unlock_irq(&g->lock);
	return 0;
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
	rb_erase(&pc->node, &g->pending);
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
 * Does a live cow target serve any sector of [start, end)?  The live
 * targets do not overlap, so only the last one starting before @end can.
 * Caller holds g->lock.
 */
static bool live_target_covers(struct cow_group *g, sector_t start, sector_t end)
{
	struct rb_node *n = g->live_targets.rb_node;
	struct cow_target *best = NULL;

	while (n) {
		struct cow_target *ct = rb_entry(n, struct cow_target, live_node);

		if (ct->ti->begin < end) {
			best = ct;
			n = n->rb_right;
		} else {
			n = n->rb_left;
		}
	}
	return best && best->ti->begin + best->ti->len > start;
}

/*
 * After a reload made chunks linear segments, their remaps are dead weight.
 * Refuse if a live cow target still covers any of them: the remap tree must
 * never lose a chunk that is served by a cow segment.
 */
static int ctl_drop(struct cow_group *g, const struct cow_msg *m)
{
	u64 first = m->chunk, count = m->arg[0];
	unsigned long index;
	sector_t start, end;
	void *entry;

	if (!count || count > g->nr_chunks - first)
		return ctl_reject(g, m, -ERANGE, "DROP range beyond the device");
	start = chunk_to_sector(g, first);
	end = chunk_to_sector(g, first + count);
	spin_lock_irq(&g->lock);
	if (live_target_covers(g, start, end)) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -EBUSY,
				  "DROP of chunks a live cow target serves");
	}
	/*
	 * No live cow target covers the range, so no new bio can look these
	 * chunks up.  Their CoW slots stay taken: the locations are in use.
	 */
	xa_for_each_range(&g->remaps, index, entry, first, first + count - 1) {
		if (!xa_is_value(entry))
			continue;	/* reserved: a copy in flight */
		xa_erase(&g->remaps, index);
		g->nr_mapped--;
		g->nr_dropped++;
	}
	spin_unlock_irq(&g->lock);
	return 0;
}

static int ctl_committed(struct cow_group *g, const struct cow_msg *m)
{

	spin_lock_irq(&g->lock);
	if (m->seq > g->ready_seq) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -ERANGE, "commit of a chunk not READY");
	}
	g->nr_commits++;
	if (m->seq > g->committed_seq)
		g->committed_seq = m->seq;
	/* Every waiter needs at most commit_wait_seq; release them all then. */
	if (g->committed_seq >= g->commit_wait_seq) {
		bio_list_merge(&g->commit_released, &g->commit_wait);
		bio_list_init(&g->commit_wait);
	} else if (!bio_list_empty(&g->commit_wait)) {
		/* Some READY was still on its way: ask again after it. */
		g->commit_wanted = true;
		wake_up_interruptible(&g->wait);
	}
	spin_unlock_irq(&g->lock);
	queue_work(cow_wq, &g->work);
	return 0;
}

static int ctl_attach(struct cow_group *g, const struct cow_msg *m)
{
	spin_lock_irq(&g->lock);
	if (g->attached) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -EINVAL, "already attached");
	}
	if (m->arg[0] >= g->chunk_sectors ||
	    (g->nr_mapped && m->arg[0] != g->phase)) {
		spin_unlock_irq(&g->lock);
		return ctl_reject(g, m, -EINVAL, "data phase does not match");
	}
	g->phase = m->arg[0];
	g->attached = true;
	spin_unlock_irq(&g->lock);
	return 0;
}

static int ctl_handle(struct cow_group *g, const struct cow_msg *m)
{
	if (m->version != COW_PROTO_VERSION)
		return ctl_reject(g, m, -EPROTO, "protocol version mismatch");
	if (m->reserved)
		return ctl_reject(g, m, -EINVAL, "reserved field not zero");
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
	case COW_MSG_DROP:
		return ctl_drop(g, m);
	default:
		return ctl_reject(g, m, -EINVAL, "unknown message type");
	}
}

static ssize_t ctl_write(struct file *file, const char __user *buf,
			 size_t len, loff_t *ppos)
{
	struct cow_group *g = file->private_data;
	struct cow_msg *msgs;
	size_t done = 0;
	int r = 0;

	if (!len || len % sizeof(*msgs))
		return -EINVAL;
	msgs = kmalloc_array(COW_MSG_BATCH, sizeof(*msgs), GFP_KERNEL);
	if (!msgs)
		return -ENOMEM;

	mutex_lock(&g->ctl_mutex);
	while (done < len && !r) {
		size_t chunk = min_t(size_t, len - done,
				     COW_MSG_BATCH * sizeof(*msgs));
		unsigned int i;

		if (g->dead) {
			r = -ENODEV;
			break;
		}
		if (copy_from_user(msgs, buf + done, chunk)) {
			r = -EFAULT;
			break;
		}
		for (i = 0; i < chunk / sizeof(*msgs); i++) {
			r = ctl_handle(g, &msgs[i]);
			if (r)
				break;
			done += sizeof(*msgs);
		}
		/* A daemon may write hundreds of thousands of messages at once. */
		cond_resched();
	}
	mutex_unlock(&g->ctl_mutex);
	kfree(msgs);
	/* A partial write tells the daemon which message was refused. */
	return done ? done : r;
}

static int ctl_open(struct inode *inode, struct file *file)
{
	struct cow_group *g;
	struct pending_chunk *pc;

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
	g->hello_pending = true;
	/* A new daemon learns everything the last one may not have seen. */
	list_for_each_entry(pc, &g->fault_sent, list)
		pc->state = PENDING_FAULT_QUEUED;
	list_splice_init(&g->fault_sent, &g->fault_queued);
	g->replaying = true;
	g->replay_next = 0;
	g->replay_seq = g->ready_seq;
	if (g->committed_seq < g->ready_seq || !bio_list_empty(&g->commit_wait))
		g->commit_wanted = true;
	spin_unlock_irq(&g->lock);
	kref_get(&g->kref);
	mutex_unlock(&cow_groups_mutex);

	file->private_data = g;
	return stream_open(inode, file);
}

static int ctl_release(struct inode *inode, struct file *file)
{
	struct cow_group *g = file->private_data;

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

/* A target leaves its group; the last one takes the group down. */
static void group_leave(struct cow_target *ct)
{
	struct cow_group *g = ct->group;

	spin_lock_irq(&g->lock);
	if (ct->live)
		rb_erase(&ct->live_node, &g->live_targets);
	ct->live = false;
	spin_unlock_irq(&g->lock);
	mutex_lock(&cow_groups_mutex);
	if (!--g->targets)
		group_kill(g);
	mutex_unlock(&cow_groups_mutex);
	group_put(g);
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
	r = cow_parse_features(ti, ct, argc - 4, argv + 4);
	if (r) {
		kfree(ct);
		return r;
	}
	/* The base is only ever read: open it read-only. */
	r = dm_get_device(ti, argv[1], COW_OPEN_READ, &ct->base);
	if (r) {
		ti->error = "Cannot open the base device";
		goto bad_base;
	}
	r = dm_get_device(ti, argv[2], dm_table_get_mode(ti->table), &ct->cow);
	if (r) {
		ti->error = "Cannot open the CoW device";
		goto bad_cow;
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
	if (ti->begin + ti->len > bdev_nr_sectors(ct->base->bdev)) {
		ti->error = "Target extends beyond the end of the base device";
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
	/* The group follows the newest table's feature arguments. */
	spin_lock_irq(&g->lock);
	g->daemon_timeout_ms = ct->daemon_timeout_ms;
	spin_unlock_irq(&g->lock);
	mutex_unlock(&cow_groups_mutex);
	ct->group = g;

	r = dm_set_target_max_io_len(ti, chunk);
	if (r) {
		ti->error = "Cannot set the maximum I/O length";
		goto bad_io_len;
	}
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 0;
	ti->num_write_zeroes_bios = 0;
	ti->per_io_data_size = sizeof(struct cow_bio);
	ti->accounts_remapped_io = true;
	ti->private = ct;
	return 0;

bad_io_len:
	group_leave(ct);
bad_group:
	dm_put_device(ti, ct->cow);
bad_cow:
	dm_put_device(ti, ct->base);
bad_base:
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

/* A bio to a chunk that is not in the remap tree. */
static int cow_map_unmapped(struct cow_group *g, struct bio *bio, u64 chunk,
			    struct pending_chunk *fresh)
{
	struct pending_chunk *pc;
	sector_t cow_sector;
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	pc = pending_find(g, chunk);
	if (pc) {
		bio_list_add(&pc->bios, bio);
		spin_unlock_irqrestore(&g->lock, flags);
		goto out_submitted;
	}
	/* The chunk may have become READY since the lock-free look-up. */
	if (remap_lookup(g, chunk, &cow_sector)) {
		if ((bio->bi_opf & REQ_FUA) && park_for_commit(g, bio)) {
			spin_unlock_irqrestore(&g->lock, flags);
			goto out_submitted;
		}
		spin_unlock_irqrestore(&g->lock, flags);
		if (fresh)
			mempool_free(fresh, &g->pending_pool);
		remap_bio_to_cow(g, bio, cow_sector);
		return DM_MAPIO_REMAPPED;
	}
	if (!fresh) {
		/* A read of a chunk never written: straight to the base. */
		spin_unlock_irqrestore(&g->lock, flags);
		bio_set_dev(bio, g->base_bdev);
		return DM_MAPIO_REMAPPED;
	}
	pc = fresh;
	fresh = NULL;
	pc->chunk = chunk;
	pc->state = PENDING_FAULT_QUEUED;
	pc->since = jiffies;
	bio_list_add(&pc->bios, bio);
	arm_daemon_timeout(g);
	pending_insert(g, pc);
	list_add_tail(&pc->list, &g->fault_queued);
	g->faults++;
	spin_unlock_irqrestore(&g->lock, flags);
	wake_up_interruptible(&g->wait);
	return DM_MAPIO_SUBMITTED;

out_submitted:
	if (fresh)
		mempool_free(fresh, &g->pending_pool);
	return DM_MAPIO_SUBMITTED;
}

static int cow_map(struct dm_target *ti, struct bio *bio)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;
	struct cow_bio *cb = dm_per_bio_data(bio, sizeof(struct cow_bio));
	struct pending_chunk *fresh = NULL;
	sector_t cow_sector, left;
	unsigned long flags;
	u64 chunk;

	cb->covering = NULL;

	if (unlikely(ct->read_only) && op_is_write(bio_op(bio)) && bio_sectors(bio))
		return DM_MAPIO_KILL;

	if (unlikely(bio->bi_opf & REQ_PREFLUSH) && !bio_sectors(bio)) {
		spin_lock_irqsave(&g->lock, flags);
		if (park_for_commit(g, bio)) {
			spin_unlock_irqrestore(&g->lock, flags);
			return DM_MAPIO_SUBMITTED;
		}
		spin_unlock_irqrestore(&g->lock, flags);
		bio_set_dev(bio, g->cow_bdev);
		return DM_MAPIO_REMAPPED;
	}

	/* Never cross a chunk boundary (ti->begin may not be chunk aligned). */
	left = g->chunk_sectors - (bio->bi_iter.bi_sector & (g->chunk_sectors - 1));
	if (bio_sectors(bio) > left)
		dm_accept_partial_bio(bio, left);

	chunk = sector_to_chunk(g, bio->bi_iter.bi_sector);
	if (remap_lookup(g, chunk, &cow_sector)) {
		if (unlikely(bio->bi_opf & REQ_FUA)) {
			spin_lock_irqsave(&g->lock, flags);
			if (park_for_commit(g, bio)) {
				spin_unlock_irqrestore(&g->lock, flags);
				return DM_MAPIO_SUBMITTED;
			}
			spin_unlock_irqrestore(&g->lock, flags);
		}
		remap_bio_to_cow(g, bio, cow_sector);
		return DM_MAPIO_REMAPPED;
	}
	if (bio_data_dir(bio) == WRITE) {
		fresh = mempool_alloc(&g->pending_pool, GFP_NOIO);
		memset(fresh, 0, sizeof(*fresh));
		fresh->group = g;
		bio_list_init(&fresh->bios);
		INIT_LIST_HEAD(&fresh->list);
	}
	return cow_map_unmapped(g, bio, chunk, fresh);
}

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
	queue_work(cow_wq, &g->work);
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
		DMEMIT("mapped=%llu pending=%u copying=%u commits=%llu daemon=%s rejected=%llu copy_errors=%llu failed=%llu timed_out=%llu dropped=%llu",
		       g->nr_mapped, g->faults, g->copies, g->nr_commits,
		       g->attached ? "attached" : "detached", g->nr_rejected,
		       g->nr_copy_errors, g->nr_failed_faults, g->nr_timed_out,
		       g->nr_dropped);
		if (g->full)
			DMEMIT(" full");
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
	DMWARN("%s: unknown message; supported: commit", g->ident);
	return -EINVAL;
}

/* A table is live between its resume and its postsuspend. */
static void cow_set_live(struct dm_target *ti, bool live)
{
	struct cow_target *ct = ti->private;
	struct cow_group *g = ct->group;
	struct rb_node **p = &g->live_targets.rb_node, *parent = NULL;

	spin_lock_irq(&g->lock);
	if (live && !ct->live) {
		while (*p) {
			parent = *p;
			if (ti->begin < rb_entry(parent, struct cow_target, live_node)->ti->begin)
				p = &parent->rb_left;
			else
				p = &parent->rb_right;
		}
		rb_link_node(&ct->live_node, parent, p);
		rb_insert_color(&ct->live_node, &g->live_targets);
	} else if (!live && ct->live) {
		rb_erase(&ct->live_node, &g->live_targets);
	}
	ct->live = live;
	spin_unlock_irq(&g->lock);
}

static void cow_resume(struct dm_target *ti)
{
	cow_set_live(ti, true);
}

static void cow_postsuspend(struct dm_target *ti)
{
	cow_set_live(ti, false);
}

static int cow_iterate_devices(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data)
{
	struct cow_target *ct = ti->private;
	sector_t cow_len = min_t(sector_t, ti->len,
				 bdev_nr_sectors(ct->cow->bdev));
	int r;

	r = fn(ti, ct->base, ti->begin, ti->len, data);
	if (r)
		return r;
	return fn(ti, ct->cow, 0, cow_len, data);
}

static struct target_type cow_target = {
	.name = "cow",
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = cow_ctr,
	.dtr = cow_dtr,
	.map = cow_map,
	.end_io = cow_end_io,
	.status = cow_status,
	.message = cow_message,
	.resume = cow_resume,
	.postsuspend = cow_postsuspend,
	.iterate_devices = cow_iterate_devices,
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
	r = alloc_chrdev_region(&cow_ctl_base, 0, COW_MAX_GROUPS, "dm-cow");
	if (r)
		goto bad_region;
	cdev_init(&cow_cdev, &cow_ctl_fops);
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
	r = dm_register_target(&cow_target);
	if (r)
		goto bad_target;
	return 0;

bad_target:
	class_destroy(cow_class);
bad_class:
	cdev_del(&cow_cdev);
bad_cdev:
	unregister_chrdev_region(cow_ctl_base, COW_MAX_GROUPS);
bad_region:
	destroy_workqueue(cow_wq);
bad_wq:
	kmem_cache_destroy(pending_cache);
	return r;
}

static void __exit dm_cow_exit(void)
{
	dm_unregister_target(&cow_target);
	class_destroy(cow_class);
	cdev_del(&cow_cdev);
	unregister_chrdev_region(cow_ctl_base, COW_MAX_GROUPS);
	destroy_workqueue(cow_wq);
	kmem_cache_destroy(pending_cache);
}

module_init(dm_cow_init);
module_exit(dm_cow_exit);

MODULE_DESCRIPTION(DM_NAME " copy-on-write target with a userspace allocator");
MODULE_AUTHOR("dm-cow developers");
MODULE_LICENSE("GPL");
