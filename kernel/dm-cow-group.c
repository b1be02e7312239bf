// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-cow group state: the lifetime of a group, its pending chunks, the
 * copies that fill them, daemon timeouts and the bios that wait for a
 * commit.  The locking rules are in dm-cow.h.
 */

#include "dm-cow.h"

DEFINE_MUTEX(cow_groups_mutex);
static LIST_HEAD(cow_groups);
struct kmem_cache *pending_cache;
struct workqueue_struct *cow_wq;
static struct lock_class_key remaps_lock_key, cow_slots_lock_key;

/* Every target of a group by the sectors it serves: see targets_tree. */
#define TARGET_START(ct) ((ct)->ti->begin)
#define TARGET_LAST(ct) ((ct)->ti->begin + (ct)->ti->len - 1)
INTERVAL_TREE_DEFINE(struct cow_target, it_node, sector_t, it_last,
		     TARGET_START, TARGET_LAST, static inline, cow_target_it)

void group_add_target(struct cow_group *g, struct cow_target *ct)
{
	lockdep_assert_held(&g->lock);
	cow_target_it_insert(ct, &g->targets_tree);
}

/*
 * Does a constructed cow target, of the live table or of one that is
 * loaded or suspended, serve any sector of [start, end)?
 */
bool group_targets_cover(struct cow_group *g, sector_t start, sector_t end)
{
	lockdep_assert_held(&g->lock);
	return cow_target_it_iter_first(&g->targets_tree, start, end - 1);
}

/* ---------------------------------------------------------------------- */
/* Pending chunks                                                          */

struct pending_chunk *pending_find(struct cow_group *g, u64 chunk)
{
	struct rb_node *n = g->pending.rb_node;

	lockdep_assert_held(&g->lock);

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

/* The pending chunk with the lowest number >= @chunk, or NULL. */
struct pending_chunk *pending_find_from(struct cow_group *g, u64 chunk)
{
	struct rb_node *n = g->pending.rb_node;
	struct pending_chunk *found = NULL;

	lockdep_assert_held(&g->lock);

	while (n) {
		struct pending_chunk *pc = rb_entry(n, struct pending_chunk, node);

		if (chunk <= pc->chunk) {
			found = pc;
			n = n->rb_left;
		} else {
			n = n->rb_right;
		}
	}
	return found;
}

void pending_insert(struct cow_group *g, struct pending_chunk *new)
{
	struct rb_node **p = &g->pending.rb_node, *parent = NULL;

	lockdep_assert_held(&g->lock);
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

/*
 * Take a pending chunk out of the tree, and its mark (see ctl_map()) out
 * of the remap xarray, when it goes without a mapping: its fault failed or
 * expired, its fill failed, its group died.  A published chunk's mark is
 * replaced by its remap instead (chunk_filled()).
 */
void pending_unlink(struct cow_group *g, struct pending_chunk *pc)
{
	lockdep_assert_held(&g->lock);
	rb_erase(&pc->node, &g->pending);
	if (pc->marked)
		WARN_ON_ONCE(xa_cmpxchg(&g->remaps, pc->chunk, pc, NULL,
					GFP_ATOMIC) != pc);
	else	/* what a first write may have reserved for a grant */
		xa_release(&g->remaps, pc->chunk);
	pc->marked = false;
}

/*
 * Give a new pending chunk the oldest unused granted location: it needs no
 * FAULT; the caller begins its fill (cow_map_unmapped()).  Its mark takes
 * the remap entry the caller reserved; without that entry (no memory for
 * it) the chunk takes no grant and faults instead.
 */
bool pending_take_grant(struct cow_group *g, struct pending_chunk *pc)
{
	unsigned int i = g->grant_head;

	lockdep_assert_held(&g->lock);
	if (!g->granted)
		return false;
	if (xa_is_err(xa_store(&g->remaps, pc->chunk, pc,
			       GFP_NOWAIT | __GFP_NOWARN)))
		return false;
	pc->marked = true;
	pc->granted = true;
	pc->slot_claimed = true;
	pc->cow_sector = g->grants[i].sector;
	pc->state = PENDING_COPYING;
	g->grants[i].sector += g->chunk_sectors;
	if (!--g->grants[i].count) {
		g->grant_head = (i + 1) % COW_GRANT_RUNS;
		g->grant_runs--;
	}
	WRITE_ONCE(g->granted, g->granted - 1);
	g->full = false;
	return true;
}

/*
 * Run the group's work (copies to start, filled chunks, released commit
 * waiters).  Never on a dead group: group_kill() sets g->dead under
 * g->lock and then cancels the work, so nothing can queue it again.
 */
void group_kick(struct cow_group *g)
{
	lockdep_assert_held(&g->lock);
	if (!g->dead)
		queue_work(cow_wq, &g->work);
}

/*
 * Must a bio that would wait for the daemon go back to device-mapper?  Only
 * while a noflush suspend is under way: device-mapper resubmits requeued
 * bios after resume then, but fails them with EIO at any other time (for
 * instance once an interrupted suspend has cleared its noflush flag and
 * before presuspend_undo runs).
 */
bool group_requeueing(struct cow_group *g)
{
	lockdep_assert_held(&g->lock);
	return g->noflush_ti && dm_noflush_suspending(g->noflush_ti);
}

/*
 * Tell monitors (dmsetup wait, dmeventd) that the status changed.  The
 * event is raised from a work item of a live target, which its dtr
 * cancels: a table must not be used after its destruction.
 */
void group_raise_event(struct cow_group *g)
{
	lockdep_assert_held(&g->lock);
	if (g->event_target)
		queue_work(cow_wq, &g->event_target->event_work);
}

/* ---------------------------------------------------------------------- */
/* Waiting for a daemon: daemon_timeout                                    */

/*
 * With daemon_timeout=<ms>, a first write or a flush that has waited that
 * long while no daemon was attached fails with EIO instead of waiting
 * forever.
 */
void arm_daemon_timeout(struct cow_group *g)
{
	lockdep_assert_held(&g->lock);
	if (g->daemon_timeout_ms && !g->attached && !g->dead)
		queue_delayed_work(cow_wq, &g->timeout_work,
				   msecs_to_jiffies(min(g->daemon_timeout_ms / 4 + 1, 1000U)));
}

static bool waited_too_long(struct cow_group *g, unsigned long since)
{
	if (time_before(since, g->detached_since))
		since = g->detached_since;
	return time_after(jiffies, since + msecs_to_jiffies(g->daemon_timeout_ms));
}

void fail_bios(struct bio_list *bios, blk_status_t status)
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

	lockdep_assert_held(&g->lock);
	list_for_each_entry_safe(pc, tmp, head, list) {
		if (!waited_too_long(g, pc->since))
			continue;
		pending_unlink(g, pc);
		list_move_tail(&pc->list, freed);
		/* A noflush suspend may have handed its bios back. */
		if (!bio_list_empty(&pc->bios))
			g->nr_timed_out++;
		bio_list_merge(bios, &pc->bios);
		g->faults--;
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
 *
 * Each waiter remembers the sequence it needs, the newest ready_seq when it
 * arrived; waiters are parked in arrival order, so their sequences never
 * decrease along g->commit_wait and a COMMITTED releases a prefix of it.
 * A later flush never holds back an earlier one.
 *
 * Returns COMMIT_NOT_NEEDED, COMMIT_PARKED, or COMMIT_REQUEUE when a noflush
 * suspend is under way: a bio must not wait for a daemon then, since the
 * suspend would wait for it; the caller hands it back to device-mapper.
 */
enum commit_hold park_for_commit(struct cow_group *g, struct bio *bio)
{
	struct cow_bio *cb = dm_per_bio_data(bio, sizeof(struct cow_bio));

	lockdep_assert_held(&g->lock);
	if (g->committed_seq >= g->ready_seq)
		return COMMIT_NOT_NEEDED;
	if (group_requeueing(g))
		return COMMIT_REQUEUE;
	if (bio_list_empty(&g->commit_wait))
		g->commit_wait_since = jiffies;
	cb->commit_seq = g->ready_seq;
	bio->bi_opf &= ~REQ_NOWAIT;	/* issued later from the work */
	bio_list_add(&g->commit_wait, bio);
	arm_daemon_timeout(g);
	g->commit_wanted = true;
	wake_up_interruptible(&g->wait);
	return COMMIT_PARKED;
}

/*
 * Move the waiters whose sequence is committed to g->commit_released, for
 * the work to issue.  Returns true if any was released.
 */
bool release_committed(struct cow_group *g)
{
	struct bio *bio;
	bool any = false;

	lockdep_assert_held(&g->lock);
	while ((bio = bio_list_peek(&g->commit_wait))) {
		struct cow_bio *cb = dm_per_bio_data(bio, sizeof(struct cow_bio));

		if (cb->commit_seq > g->committed_seq)
			break;
		bio_list_add(&g->commit_released, bio_list_pop(&g->commit_wait));
		any = true;
	}
	if (any)
		g->commit_wait_since = jiffies;
	return any;
}

/* Complete bios with BLK_STS_DM_REQUEUE: device-mapper resubmits them. */
void requeue_bios(struct bio_list *bios)
{
	fail_bios(bios, BLK_STS_DM_REQUEUE);
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
 * or not at all for DATA_VALID), or failed to: hand it to the work.
 */
void fill_done(struct cow_group *g, struct pending_chunk *pc, int error)
{
	lockdep_assert_held(&g->lock);
	pc->error = error;
	pc->filled = !error;
	if (!error)
		pc->ready_seq = ++g->ready_seq;
	list_add_tail(&pc->list, &g->copy_done);
	group_kick(g);
}

/* A page of zeros, endlessly: what the zero writes of fills write. */
static struct page_list cow_zero_pages;

void cow_zero_init(void)
{
	cow_zero_pages.next = &cow_zero_pages;
	cow_zero_pages.page = ZERO_PAGE(0);
}

/*
 * One part of a fill (the copy from the base, the zeros past its end) is
 * done; the fill is done with the last.  Nothing touches the group after
 * the lock is dropped: group_kill() waits for zero writes under it.
 */
static void fill_part_done(struct pending_chunk *pc, bool read_err,
			   bool write_err, bool zeros)
{
	struct cow_group *g = pc->group;
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	if (read_err)
		pc->base_error = true;
	if (read_err || write_err)
		pc->error = -EIO;
	if (!--pc->fill_parts) {
		g->copies--;
		fill_done(g, pc, pc->error);
	}
	if (zeros && !--g->zero_writes)
		wake_up(&g->zero_wait);
	spin_unlock_irqrestore(&g->lock, flags);
}

static void copy_complete(int read_err, unsigned long write_err, void *context)
{
	fill_part_done(context, read_err, write_err, false);
}

static void zero_complete(unsigned long error, void *context)
{
	fill_part_done(context, false, error, true);
}

/*
 * Write zeros over CoW sectors [@from, @from + @count) of the chunk's
 * location: real writes, not kcopyd's write-zeroes, which a loop device
 * turns into a hole the host may have no space to fill later.
 */
static void start_zeros(struct cow_group *g, struct pending_chunk *pc,
			sector_t from, sector_t count)
{
	struct dm_io_region where = {
		.bdev = g->cow_bdev,
		.sector = pc->cow_sector + from,
		.count = count,
	};
	struct dm_io_request req = {
		.bi_opf = REQ_OP_WRITE,
		.mem.type = DM_IO_PAGE_LIST,
		.mem.ptr.pl = &cow_zero_pages,
		.notify.fn = zero_complete,
		.notify.context = pc,
		.client = g->io_client,
	};

	spin_lock_irq(&g->lock);
	g->zero_writes++;
	spin_unlock_irq(&g->lock);
	/* Async, one region, a write: dm_io() fails only on a bad request. */
	if (WARN_ON_ONCE(dm_io(&req, 1, &where, NULL, IOPRIO_DEFAULT)))
		zero_complete(1, pc);
}

/*
 * Copy the chunk from the base to its CoW location.  What of the location
 * lies past the base's end is zeroed: the part of a grown device there
 * reads as zeros, and so must the tail of the base's partial last chunk
 * should the device grow later.  The location's size is read live, as
 * ctl_check_location() does: at least the chunk's length on the device.
 */
static void start_copy(struct cow_group *g, struct pending_chunk *pc)
{
	sector_t base = chunk_base_len(g, pc->chunk);
	sector_t size = bdev_nr_sectors(g->cow_bdev), slot = 0;
	struct dm_io_region from, to;

	if (pc->cow_sector < size)
		slot = min_t(sector_t, g->chunk_sectors, size - pc->cow_sector);
	pc->copy_tried = true;
	pc->error = 0;
	pc->base_error = false;
	if (slot < chunk_len(g, pc->chunk)) {
		/* The CoW device shrank under the location. */
		spin_lock_irq(&g->lock);
		g->copies--;
		fill_done(g, pc, -EIO);
		spin_unlock_irq(&g->lock);
		return;
	}
	pc->fill_parts = (base > 0) + (slot > base);
	if (slot > base)
		start_zeros(g, pc, base, slot - base);
	if (base > 0) {
		from.bdev = g->base_bdev;
		from.sector = chunk_to_sector(g, pc->chunk);
		from.count = base;
		to.bdev = g->cow_bdev;
		to.sector = pc->cow_sector;
		to.count = base;
		dm_kcopyd_copy(g->kcopyd, &from, 1, &to, 0, copy_complete, pc);
	}
}

/*
 * A merged fill: the base chunk is read into memory, the queued writes'
 * data is copied over it, and one write puts the result in the CoW
 * location.  Two I/Os in series instead of a copy's two and then the
 * writes, and the writes complete when the chunk is published, so a
 * failed fill fails them (none reported success for data that then went
 * nowhere).  Only writes without FUA: those wait for a commit after the
 * chunk is mapped.
 */
static bool merge_candidate(struct cow_group *g, struct pending_chunk *pc,
			    struct bio *bio)
{
	sector_t end = chunk_to_sector(g, pc->chunk) + chunk_len(g, pc->chunk);

	/*
	 * Device-mapper sends the data of a PREFLUSH write without the flag,
	 * after an empty flush; tested all the same.  No target reaches past
	 * the device's size (cow_ctr()), so no bio reaches past its chunk.
	 */
	return bio_op(bio) == REQ_OP_WRITE && bio_sectors(bio) &&
	       !(bio->bi_opf & (REQ_FUA | REQ_PREFLUSH)) &&
	       !WARN_ON_ONCE(bio_end_sector(bio) > end);
}

/* Move the writes a merged fill can carry from pc->bios to pc->merged. */
static void take_merge_writes(struct cow_group *g, struct pending_chunk *pc)
{
	struct bio_list keep = BIO_EMPTY_LIST;
	struct bio *bio;

	lockdep_assert_held(&g->lock);
	while ((bio = bio_list_pop(&pc->bios))) {
		if (merge_candidate(g, pc, bio))
			bio_list_add(&pc->merged, bio);
		else
			bio_list_add(&keep, bio);
	}
	pc->bios = keep;
}

static void free_fill_bio(struct bio *fill)
{
	struct bio_vec *bv;
	struct bvec_iter_all iter;

	bio_for_each_segment_all(bv, fill, iter)
		__free_page(bv->bv_page);
	bio_uninit(fill);
	kfree(fill);
}

/*
 * Fault injection (debugfs dm-cow-fill-alloc, on a kernel with
 * CONFIG_FAULT_INJECTION_DEBUG_FS): fail the fill's allocations as if
 * memory were short; the memory is allocated by the work, where failslab's
 * task filter cannot reach.  Each allocation (the bio, each page) asks.
 */
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static DECLARE_FAULT_ATTR(fail_fill_alloc);
static struct dentry *fail_fill_alloc_dir;

void cow_fault_init(void)
{
	fail_fill_alloc_dir = fault_create_debugfs_attr("dm-cow-fill-alloc",
							NULL, &fail_fill_alloc);
}

void cow_fault_exit(void)
{
	debugfs_remove_recursive(fail_fill_alloc_dir);	/* takes an error */
}

static bool fill_alloc_fails(void)
{
	return should_fail(&fail_fill_alloc, 1);
}
#else
void cow_fault_init(void)
{
}

void cow_fault_exit(void)
{
}

static bool fill_alloc_fails(void)
{
	return false;
}
#endif

/*
 * A bio over freshly allocated pages for @sectors (zeroed if asked), or
 * NULL.  Without memory the fill falls back to kcopyd, which keeps its own
 * reserve.
 */
static struct bio *alloc_fill_bio(struct block_device *bdev, sector_t sectors,
				  bool zeroed)
{
	const gfp_t gfp = GFP_NOIO | __GFP_NORETRY | __GFP_NOWARN |
			  (zeroed ? __GFP_ZERO : 0);
	unsigned int bytes = sectors << SECTOR_SHIFT;
	unsigned int nr = DIV_ROUND_UP(bytes, PAGE_SIZE);
	struct bio *fill = fill_alloc_fails() ? NULL : bio_kmalloc(nr, gfp);

	if (!fill)
		return NULL;
	bio_init(fill, bdev, fill->bi_inline_vecs, nr, REQ_OP_READ);
	while (bytes) {
		unsigned int len = min_t(unsigned int, bytes, PAGE_SIZE);
		struct page *page = fill_alloc_fails() ? NULL : alloc_page(gfp);

		if (!page) {
			free_fill_bio(fill);
			return NULL;
		}
		__bio_add_page(fill, page, len, 0);
		bytes -= len;
	}
	return fill;
}

static void merge_read_end_io(struct bio *fill)
{
	struct pending_chunk *pc = fill->bi_private;
	struct cow_group *g = pc->group;
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	pc->error = fill->bi_status ? -EIO : 0;
	pc->base_error = fill->bi_status != BLK_STS_OK;
	list_add_tail(&pc->list, &g->fill_read);
	group_kick(g);
	spin_unlock_irqrestore(&g->lock, flags);
}

static void merge_write_end_io(struct bio *fill)
{
	struct pending_chunk *pc = fill->bi_private;
	struct cow_group *g = pc->group;
	int error = fill->bi_status ? -EIO : 0;
	unsigned long flags;

	pc->fill = NULL;
	free_fill_bio(fill);
	spin_lock_irqsave(&g->lock, flags);
	g->copies--;
	fill_done(g, pc, error);
	spin_unlock_irqrestore(&g->lock, flags);
}

/*
 * The fill does the merged writes' I/O: it goes in their cgroup, at their
 * priority, with the hints of the first (O_DIRECT writes are REQ_SYNC).
 */
static void fill_bio_like(struct bio *fill, struct pending_chunk *pc,
			  sector_t sector, blk_opf_t op)
{
	const blk_opf_t hints = REQ_SYNC | REQ_IDLE | REQ_META | REQ_PRIO;
	struct bio *first = bio_list_peek(&pc->merged);

	fill->bi_opf = op | (first->bi_opf & hints);
	fill->bi_ioprio = first->bi_ioprio;
	bio_clone_blkg_association(fill, first);
	fill->bi_iter.bi_sector = sector;
	fill->bi_private = pc;
}

static void merge_and_write(struct cow_group *g, struct pending_chunk *pc);

/*
 * Begin a merged fill; false (and the writes back on the queue) if it
 * cannot be one: nothing to merge, a chunk too large, no memory.
 */
static bool start_merged_fill(struct cow_group *g, struct pending_chunk *pc)
{
	sector_t len = g->chunk_sectors, base = chunk_base_len(g, pc->chunk);
	unsigned long flags;
	struct bio *fill;

	/*
	 * Whole chunks only, of the base or past its end (zeros, no read);
	 * start_copy() does the base's partial last chunk.
	 */
	if ((len << SECTOR_SHIFT) > COW_MERGE_MAX_BYTES ||
	    (base && base != len) ||
	    pc->cow_sector + len > bdev_nr_sectors(g->cow_bdev))
		return false;
	spin_lock_irqsave(&g->lock, flags);
	take_merge_writes(g, pc);
	spin_unlock_irqrestore(&g->lock, flags);
	if (bio_list_empty(&pc->merged))
		return false;

	fill = alloc_fill_bio(g->base_bdev, len, !base);
	if (!fill) {
		spin_lock_irqsave(&g->lock, flags);
		bio_list_merge_head(&pc->bios, &pc->merged);
		bio_list_init(&pc->merged);
		spin_unlock_irqrestore(&g->lock, flags);
		return false;
	}
	pc->copy_tried = true;
	pc->error = 0;
	pc->base_error = false;
	pc->fill = fill;
	if (!base) {
		merge_and_write(g, pc);
		return true;
	}
	fill_bio_like(fill, pc, chunk_to_sector(g, pc->chunk), REQ_OP_READ);
	fill->bi_end_io = merge_read_end_io;
	submit_bio(fill);
	return true;
}

/* Copy a write's data into the fill's pages, at its offset in the chunk. */
static void merge_write_data(struct cow_group *g, struct bio *fill,
			     struct bio *bio)
{
	size_t off = (size_t)(bio->bi_iter.bi_sector & (g->chunk_sectors - 1))
		     << SECTOR_SHIFT;
	struct bvec_iter iter;
	struct bio_vec bv;

	bio_for_each_segment(bv, bio, iter) {
		char *src = bvec_kmap_local(&bv);
		unsigned int done = 0;

		while (done < bv.bv_len) {
			struct page *page = fill->bi_io_vec[off >> PAGE_SHIFT].bv_page;
			size_t pgoff = offset_in_page(off);
			unsigned int n = min_t(size_t, bv.bv_len - done,
					       PAGE_SIZE - pgoff);

			memcpy_to_page(page, pgoff, src + done, n);
			done += n;
			off += n;
		}
		kunmap_local(src);
	}
}

/* The base chunk is in memory: merge the writes and write it out. */
static void merge_and_write(struct cow_group *g, struct pending_chunk *pc)
{
	struct bio *fill = pc->fill;
	unsigned short i, nr = fill->bi_vcnt;
	unsigned long flags;
	struct bio *bio;

	if (pc->error) {
		pc->fill = NULL;
		free_fill_bio(fill);
		spin_lock_irqsave(&g->lock, flags);
		g->copies--;
		fill_done(g, pc, pc->error);
		spin_unlock_irqrestore(&g->lock, flags);
		return;
	}
	bio_list_for_each(bio, &pc->merged)
		merge_write_data(g, fill, bio);
	/* bio_reset() keeps the page vector; the pages go on as they were. */
	bio_reset(fill, g->cow_bdev, REQ_OP_WRITE);
	for (i = 0; i < nr; i++)
		__bio_add_page(fill, fill->bi_io_vec[i].bv_page,
			       fill->bi_io_vec[i].bv_len, 0);
	fill_bio_like(fill, pc, pc->cow_sector, REQ_OP_WRITE);
	fill->bi_end_io = merge_write_end_io;
	submit_bio(fill);
}

/* Fill a chunk by a copy; the caller counted it in g->copies. */
static void begin_copy(struct cow_group *g, struct pending_chunk *pc)
{
	if (!start_merged_fill(g, pc))
		start_copy(g, pc);
}

/*
 * A queued write that covers the whole chunk makes the copy unnecessary:
 * find one and take it off the queue.
 */
static struct bio *take_covering_write(struct cow_group *g,
				       struct pending_chunk *pc)
{
	struct bio_list keep = BIO_EMPTY_LIST;
	struct bio *bio, *found = NULL;

	lockdep_assert_held(&g->lock);

	while ((bio = bio_list_pop(&pc->bios))) {
		if (!found && cow_bio_covers_chunk(g, bio, pc->chunk))
			found = bio;
		else
			bio_list_add(&keep, bio);
	}
	pc->bios = keep;
	return found;
}

/*
 * Begin filling the CoW location of a freshly mapped chunk, within the
 * copy budget; called from the work without g->lock.
 */
static void fill_chunk(struct cow_group *g, struct pending_chunk *pc)
{
	struct bio *cover;
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	if (pc->data_valid) {
		fill_done(g, pc, 0);
		spin_unlock_irqrestore(&g->lock, flags);
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
		begin_copy(g, pc);
	}
}

/*
 * The chunk's data is in place (or could not be put there): publish the
 * mapping and let the queued bios through.  Process context.
 */
static void chunk_filled(struct cow_group *g, struct pending_chunk *pc)
{
	struct bio_list bios, merged, go = BIO_EMPTY_LIST;
	struct bio_list requeue = BIO_EMPTY_LIST;
	sector_t cow_sector;
	struct bio *bio;
	unsigned long flags;

	if (pc->error && !pc->copy_tried) {
		/* The covering write failed: fall back to a real copy. */
		DMERR_LIMIT("%s: whole-chunk write of chunk %llu failed; copying it instead",
			    g->ident, pc->chunk);
		spin_lock_irqsave(&g->lock, flags);
		if (g->copies >= COW_MAX_COPIES) {
			list_add_tail(&pc->list, &g->copy_wait);
			spin_unlock_irqrestore(&g->lock, flags);
			return;
		}
		g->copies++;
		spin_unlock_irqrestore(&g->lock, flags);
		begin_copy(g, pc);
		return;
	}

	if (pc->error) {
		DMERR_LIMIT("%s: fill of chunk %llu at CoW sector %llu failed %s; failing its I/O",
			    g->ident, pc->chunk, (unsigned long long)pc->cow_sector,
			    pc->base_error ? "reading the base" : "writing the CoW device");
		/*
		 * Give the slot back only if this MAP took it: a location the
		 * chunk held before (its remap dropped by a reload) still
		 * holds its committed data.
		 */
		if (pc->slot_claimed) {
			mutex_lock(&g->ctl_mutex);
			xa_erase(&g->cow_slots, cow_slot(g, pc->cow_sector));
			mutex_unlock(&g->ctl_mutex);
		}
		spin_lock_irqsave(&g->lock, flags);
		pending_unlink(g, pc);
		bios = pc->merged;
		bio_list_merge(&bios, &pc->bios);
		bio_list_init(&pc->merged);
		bio_list_init(&pc->bios);
		g->nr_copy_errors++;
		/* The daemon learns that the location is free again. */
		pc->state = PENDING_COPY_FAILED;
		list_add_tail(&pc->list, &g->copy_failed);
		group_raise_event(g);
		spin_unlock_irqrestore(&g->lock, flags);
		wake_up_interruptible(&g->wait);
		fail_bios(&bios, BLK_STS_IOERR);
		return;
	}

	/*
	 * Once on g->ready, a daemon's read() may free @pc at any moment:
	 * take what the queued bios need first.  The remap replaces the
	 * chunk's mark: storing it does not allocate.  It must stay
	 * GFP_ATOMIC: with a blocking mask the xarray would drop its lock
	 * with xas_unlock_irq() and enable interrupts under g->lock.
	 */
	cow_sector = pc->cow_sector;
	merged = pc->merged;
	bio_list_init(&pc->merged);
	spin_lock_irqsave(&g->lock, flags);
	WARN_ON_ONCE(xa_is_err(xa_store(&g->remaps, pc->chunk,
					xa_mk_value(cow_sector), GFP_ATOMIC)));
	rb_erase(&pc->node, &g->pending);
	pc->marked = false;
	bios = pc->bios;
	bio_list_init(&pc->bios);
	pc->state = PENDING_READY;
	g->published_seq = pc->ready_seq;
	g->nr_mapped++;
	list_add_tail(&pc->list, &g->ready);
	while ((bio = bio_list_pop(&bios))) {
		enum commit_hold hold = COMMIT_NOT_NEEDED;

		if (bio->bi_opf & REQ_FUA)
			hold = park_for_commit(g, bio);
		if (hold == COMMIT_REQUEUE)
			bio_list_add(&requeue, bio);
		else if (hold == COMMIT_NOT_NEEDED)
			bio_list_add(&go, bio);
	}
	spin_unlock_irqrestore(&g->lock, flags);
	wake_up_interruptible(&g->wait);
	requeue_bios(&requeue);

	/* Their data is in the chunk, which reads see from now on. */
	while ((bio = bio_list_pop(&merged)))
		bio_endio(bio);
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
	LIST_HEAD(to_fill);
	LIST_HEAD(base_read);
	unsigned long flags;

	spin_lock_irqsave(&g->lock, flags);
	list_splice_init(&g->to_fill, &to_fill);
	list_splice_init(&g->fill_read, &base_read);
	list_splice_init(&g->copy_done, &done);
	while (g->copies < COW_MAX_COPIES && !list_empty(&g->copy_wait)) {
		pc = list_first_entry(&g->copy_wait, struct pending_chunk, list);
		list_move_tail(&pc->list, &start);
		g->copies++;
	}
	released = g->commit_released;
	bio_list_init(&g->commit_released);
	spin_unlock_irqrestore(&g->lock, flags);

	list_for_each_entry_safe(pc, tmp, &base_read, list) {
		list_del_init(&pc->list);
		merge_and_write(g, pc);
		cond_resched();
	}
	list_for_each_entry_safe(pc, tmp, &start, list) {
		list_del_init(&pc->list);
		begin_copy(g, pc);
	}
	list_for_each_entry_safe(pc, tmp, &to_fill, list) {
		list_del_init(&pc->list);
		fill_chunk(g, pc);
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

bool ident_valid(const char *ident)
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

struct cow_group *group_find(const char *ident)
{
	struct cow_group *g;

	lockdep_assert_held(&cow_groups_mutex);
	list_for_each_entry(g, &cow_groups, list)
		if (!strcmp(g->ident, ident))
			return g;
	return NULL;
}

static void group_free(struct kref *kref)
{
	struct cow_group *g = container_of(kref, struct cow_group, kref);
	struct pending_chunk *pc, *tmp;

	/* group_kill() freed the rest: only unread messages are left. */
	list_for_each_entry_safe(pc, tmp, &g->ready, list) {
		list_del(&pc->list);
		mempool_free(pc, &g->pending_pool);
	}
	list_for_each_entry_safe(pc, tmp, &g->copy_failed, list) {
		list_del(&pc->list);
		mempool_free(pc, &g->pending_pool);
	}
	WARN_ON(!RB_EMPTY_ROOT(&g->pending));
	xa_destroy(&g->remaps);
	xa_destroy(&g->cow_slots);
	mempool_exit(&g->pending_pool);
	mutex_destroy(&g->ctl_mutex);
	kfree(g->ctl_msgs);
	kfree(g);
}

void group_put(struct cow_group *g)
{
	kref_put(&g->kref, group_free);
}

/*
 * A new group's devices must not be another group's CoW device (two
 * daemons would allocate in one store, or a base would change under its
 * readers), nor its CoW device another group's base.  Many groups share a
 * base, which is only read.
 */
static char *group_devices_clash(dev_t base, dev_t cow)
{
	struct cow_group *g;

	lockdep_assert_held(&cow_groups_mutex);
	list_for_each_entry(g, &cow_groups, list) {
		if (g->cow_dev == cow)
			return "The CoW device is in use by another group";
		if (g->base_dev == cow)
			return "The CoW device is another group's base";
		if (g->cow_dev == base)
			return "The base is another group's CoW device";
	}
	return NULL;
}

struct cow_group *group_create(const char *ident, struct cow_target *ct,
				      u32 chunk_sectors, char **error)
{
	struct cow_group *g;
	char *clash;
	int r;

	lockdep_assert_held(&cow_groups_mutex);
	clash = group_devices_clash(ct->base->bdev->bd_dev, ct->cow->bdev->bd_dev);
	if (clash) {
		*error = clash;
		return ERR_PTR(-EBUSY);
	}
	g = kzalloc(sizeof(*g), GFP_KERNEL);
	if (!g) {
		*error = "Cannot allocate group";
		return ERR_PTR(-ENOMEM);
	}
	kref_init(&g->kref);
	strscpy(g->ident, ident, sizeof(g->ident));
	g->targets_tree = RB_ROOT_CACHED;
	g->md_dev = ct->md_dev;
	g->base_dev = ct->base->bdev->bd_dev;
	g->cow_dev = ct->cow->bdev->bd_dev;
	g->base_bdev = ct->base->bdev;
	g->cow_bdev = ct->cow->bdev;
	g->base_sectors = bdev_nr_sectors(g->base_bdev);
	g->chunk_sectors = chunk_sectors;
	g->chunk_shift = __ffs(chunk_sectors);
	/*
	 * A device made larger than its base (a grown store) stays so: the
	 * first target sets the size (cowctl makes one cow target).
	 */
	g->dev_sectors = max_t(sector_t, g->base_sectors,
			       ct->ti->begin + ct->ti->len);
	if (g->dev_sectors > COW_MAX_DEV_SECTORS) {
		*error = "Device larger than dm-cow serves";
		kfree(g);
		return ERR_PTR(-EINVAL);
	}
	g->nr_chunks = DIV_ROUND_UP_ULL(g->dev_sectors, chunk_sectors);
	/*
	 * Updated under g->lock, which bio completion takes.  The two xarrays
	 * are initialised at one place, so lockdep would see one class: give
	 * each its own, since only the remaps' lock is taken inside g->lock.
	 */
	xa_init_flags(&g->remaps, XA_FLAGS_LOCK_IRQ);
	lockdep_set_class(&g->remaps.xa_lock, &remaps_lock_key);
	xa_init(&g->cow_slots);
	lockdep_set_class(&g->cow_slots.xa_lock, &cow_slots_lock_key);
	spin_lock_init(&g->lock);
	init_waitqueue_head(&g->zero_wait);
	g->pending = RB_ROOT;
	INIT_LIST_HEAD(&g->fault_queued);
	INIT_LIST_HEAD(&g->fault_sent);
	INIT_LIST_HEAD(&g->to_fill);
	INIT_LIST_HEAD(&g->copy_wait);
	INIT_LIST_HEAD(&g->fill_read);
	INIT_LIST_HEAD(&g->copy_done);
	INIT_LIST_HEAD(&g->ready);
	INIT_LIST_HEAD(&g->copy_failed);
	bio_list_init(&g->commit_wait);
	bio_list_init(&g->commit_released);
	mutex_init(&g->ctl_mutex);
	init_waitqueue_head(&g->wait);
	INIT_WORK(&g->work, cow_work);
	INIT_DELAYED_WORK(&g->timeout_work, daemon_timeout_work);
	g->detached_since = jiffies;

	g->ctl_msgs = kmalloc_array(COW_MSG_BATCH, sizeof(*g->ctl_msgs), GFP_KERNEL);
	if (!g->ctl_msgs) {
		r = -ENOMEM;
		*error = "Cannot allocate the control buffer";
		goto bad_msgs;
	}
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
	g->io_client = dm_io_client_create();
	if (IS_ERR(g->io_client)) {
		r = PTR_ERR(g->io_client);
		*error = "Cannot create dm-io client";
		goto bad_io;
	}
	r = cow_ctl_add(g);
	if (r) {
		*error = r == -EBUSY ? "Too many dm-cow groups" :
			"Cannot create the control device";
		goto bad_ctl;
	}
	list_add(&g->list, &cow_groups);
	return g;

bad_ctl:
	dm_io_client_destroy(g->io_client);
bad_io:
	dm_kcopyd_client_destroy(g->kcopyd);
bad_kcopyd:
	mempool_exit(&g->pending_pool);
bad_pool:
	kfree(g->ctl_msgs);
bad_msgs:
	mutex_destroy(&g->ctl_mutex);
	kfree(g);
	return ERR_PTR(r);
}

/*
 * Publish the chunks whose fill completed while the group was dying (a
 * covering write may have completed to its submitter already): the daemon
 * still reads their READYs before end of file, and commits them.  kcopyd is
 * gone, so a failed covering write is a failed fill here.
 */
static void publish_fills(struct cow_group *g)
{
	struct pending_chunk *pc, *tmp;
	LIST_HEAD(done);

	spin_lock_irq(&g->lock);
	list_splice_init(&g->copy_done, &done);
	spin_unlock_irq(&g->lock);
	list_for_each_entry_safe(pc, tmp, &done, list) {
		list_del_init(&pc->list);
		pc->copy_tried = true;
		chunk_filled(g, pc);
	}
}

/* Free the pending chunks of a group nothing can reach any more. */
static void free_pending(struct cow_group *g, struct list_head *head)
{
	struct pending_chunk *pc, *tmp;
	struct bio_list bios = BIO_EMPTY_LIST;

	spin_lock_irq(&g->lock);
	list_for_each_entry_safe(pc, tmp, head, list) {
		pending_unlink(g, pc);
		list_del(&pc->list);
		/* Device-mapper waited for every bio before the last dtr. */
		WARN_ON_ONCE(!bio_list_empty(&pc->bios) ||
			     !bio_list_empty(&pc->merged));
		bio_list_merge(&bios, &pc->bios);
		mempool_free(pc, &g->pending_pool);
	}
	g->faults = 0;
	WARN_ON_ONCE(!bio_list_empty(&g->commit_wait) ||
		     !bio_list_empty(&g->commit_released));
	spin_unlock_irq(&g->lock);
	fail_bios(&bios, BLK_STS_IOERR);
}

static bool zero_writes_done(struct cow_group *g)
{
	bool done;

	spin_lock_irq(&g->lock);
	done = !g->zero_writes;
	spin_unlock_irq(&g->lock);
	return done;
}

/*
 * The last target is gone: no bio can arrive any more, and device-mapper
 * waited for every bio that was in flight.  Pending chunks without bios
 * can remain (a noflush suspend handed their bios back, and the daemon may
 * have answered since), and so can their copies.  Under cow_groups_mutex.
 */
static void group_kill(struct cow_group *g)
{
	lockdep_assert_held(&cow_groups_mutex);
	list_del(&g->list);
	cow_ctl_remove(g);
	/*
	 * Dead under ctl_mutex too: a control-device writer checks g->dead
	 * under it before each batch, so no handler runs on a dead group,
	 * and the devices it looks at stay open until it is done.
	 */
	mutex_lock(&g->ctl_mutex);
	spin_lock_irq(&g->lock);
	g->dead = true;
	spin_unlock_irq(&g->lock);
	mutex_unlock(&g->ctl_mutex);
	wake_up_interruptible(&g->wait);

	/* Nothing queues work on a dead group; wait for what runs. */
	cancel_work_sync(&g->work);
	/* Waits for every copy and its callback, which queues nothing now. */
	dm_kcopyd_client_destroy(g->kcopyd);
	g->kcopyd = NULL;
	/* And for the zero writes of fills, whose callbacks end under g->lock. */
	wait_event(g->zero_wait, zero_writes_done(g));
	dm_io_client_destroy(g->io_client);
	g->io_client = NULL;
	cancel_delayed_work_sync(&g->timeout_work);
	/* A merged fill holds bios: device-mapper waited for it. */
	WARN_ON_ONCE(!list_empty(&g->fill_read));
	publish_fills(g);
	free_pending(g, &g->fault_queued);
	free_pending(g, &g->fault_sent);
	free_pending(g, &g->copy_wait);
	free_pending(g, &g->to_fill);
	/* Every message is queued now: a reader may see end of file. */
	spin_lock_irq(&g->lock);
	g->base_bdev = NULL;
	g->cow_bdev = NULL;
	g->drained = true;
	spin_unlock_irq(&g->lock);
	wake_up_interruptible(&g->wait);
}

/* A target leaves its group; the last one takes the group down. */
void group_leave(struct cow_target *ct)
{
	struct cow_group *g = ct->group;

	spin_lock_irq(&g->lock);
	cow_target_it_remove(ct, &g->targets_tree);
	if (g->event_target == ct)
		g->event_target = NULL;
	if (g->noflush_ti == ct->ti)
		g->noflush_ti = NULL;
	spin_unlock_irq(&g->lock);
	/* Nothing queues it now; the table goes away after us. */
	cancel_work_sync(&ct->event_work);
	mutex_lock(&cow_groups_mutex);
	if (!--g->targets)
		group_kill(g);
	mutex_unlock(&cow_groups_mutex);
	group_put(g);
}
