/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-cow internal header: the state the target (dm-cow-target.c), the
 * control device (dm-cow-ctl.c) and the group code (dm-cow-group.c) share.
 *
 * Lock ordering:
 *
 *   cow_groups_mutex		the list of groups, group->targets, group
 *				creation and teardown, control-device open
 *     g->ctl_mutex		one control-device reader or writer at a
 *				time and its message buffer (held across
 *				the copy from or to the daemon's memory,
 *				under memalloc_noio); the cow_slots xarray;
 *				g->dead is set under it
 *       g->lock		(spinlock, irq-safe: taken from bio
 *				completion) pending tree and lists, commit
 *				waiters, counters, live targets, flags
 *         g->remaps.xa_lock	(irq-safe, XA_FLAGS_LOCK_IRQ) the remap
 *				xarray; readers use RCU and take no lock
 *
 * Nothing sleeps under g->lock or an xarray lock.  Functions that need a
 * lock assert it with lockdep_assert_held().  Wait queues (g->wait,
 * g->zero_wait) may be woken under g->lock: their locks are leaves.  The
 * zero writes' callbacks end under g->lock, which group_kill() takes to
 * see that none is left before it frees the dm-io client.
 */
#ifndef DM_COW_H
#define DM_COW_H

#include <linux/device-mapper.h>
#include <linux/dm-kcopyd.h>
#include <linux/dm-io.h>
#include <linux/ioprio.h>
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
#include <linux/interval_tree_generic.h>
#include <linux/sched/mm.h>
#include <linux/sizes.h>
#include <linux/debugfs.h>
#include <linux/fault-inject.h>

/* Chunk numbers index xarrays, whose indices are unsigned long. */
#if BITS_PER_LONG < 64
#error "dm-cow needs a 64-bit kernel"
#endif

#include "dm-cow-proto.h"

#define DM_MSG_PREFIX "cow"

#define COW_MAX_GROUPS 1024	/* minors of the control-device region */
#define COW_MIN_PENDING 64	/* mempool reserve of pending chunks */
#define COW_MAX_COPIES 64	/* fills (copies, merged) in flight per group */
#define COW_MSG_BATCH 64	/* messages per read()/write() step */
#define COW_REPLAY_SCAN 256	/* pending chunks looked at per read() step */
#define COW_MAX_IO_OPT SZ_4M	/* largest chunk advertised as io_opt */
#define COW_GRANT_RUNS 64	/* runs of unused granted locations held */
/* Largest chunk a merged fill reads into memory (one bio of its pages). */
#define COW_MERGE_MAX_BYTES SZ_256K
/* The value of a granted CoW slot in g->cow_slots until a chunk uses it. */
#define COW_SLOT_GRANTED (LONG_MAX >> 1)

/* ------------------------------------------------------------------------ */

enum pending_state {
	PENDING_FAULT_QUEUED,	/* FAULT not yet read by a daemon */
	PENDING_FAULT_SENT,	/* FAULT read, waiting for MAP/FAIL */
	PENDING_COPYING,	/* MAP taken or location granted; filling */
	PENDING_READY,		/* data in place; READY not yet read */
	PENDING_COPY_FAILED,	/* fill failed; COPY_FAILED not yet read */
};

/*
 * A chunk between its first write and the moment its data is in place.
 * While it exists every bio to the chunk waits on @bios, but a write that
 * covers the chunk and fills it (cow_bio::covering), and reads that go to
 * the base until it is filled.
 */
struct pending_chunk {
	struct rb_node node;		/* in group->pending, while not READY */
	struct list_head list;		/* on one of the group's lists */
	struct cow_group *group;
	u64 chunk;
	sector_t cow_sector;
	enum pending_state state;
	bool data_valid;		/* MAP_DATA_VALID: no copy */
	bool slot_claimed;		/* the MAP took the CoW slot anew */
	bool copy_tried;		/* a copy (kcopyd or merged) was started */
	bool marked;			/* its mark is in the remap xarray */
	bool granted;			/* its location came from a GRANT */
	bool filled;			/* the data landed; not yet published */
	bool base_error;		/* @error: reading the base failed */
	u8 fill_parts;			/* parts of a fill in flight: the kcopyd
					 * copy, the dm-io zero write
					 */
	int error;			/* copy or covering-write error */
	u64 ready_seq;
	unsigned long since;		/* jiffies when the fault was raised */
	struct bio_list bios;
	/*
	 * A merged fill: writes taken off @bios whose data is copied into
	 * @fill (the base chunk read into memory) before it is written to
	 * the CoW location; they complete when the chunk is published.  Both
	 * belong to whoever holds the COPYING chunk off every list (the fill,
	 * then the work), never to a g->lock holder.  A fill exists only
	 * while @merged holds bios, so device-mapper waits for it before the
	 * last target goes.
	 */
	struct bio_list merged;
	struct bio *fill;
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
	/*
	 * The device's size: the base's, or more once grown (cowctl resize);
	 * sectors past the base's end read as zeros until written.  Only
	 * grows, under ctl_mutex and lock (ctl_resized()); cow_ctr() and
	 * chunk_len() read it without them, hence READ_ONCE().  nr_chunks
	 * covers it.
	 */
	sector_t dev_sectors;
	u32 chunk_sectors;
	u32 chunk_shift;
	u64 nr_chunks;

	/*
	 * chunk -> xa_mk_value(CoW sector) for a mapped chunk, or its
	 * struct pending_chunk (a mark) from its MAP until it is published:
	 * from the moment its data may land.  Loaded under RCU on the I/O
	 * path, where a mark is never dereferenced (the pending chunk is
	 * reached under g->lock, through g->pending): a read that finds no
	 * entry goes to the base without a lock.  The mark takes the entry
	 * ctl_map() reserved in process context and the remap replaces it,
	 * so neither allocates under g->lock.
	 */
	struct xarray remaps;
	/*
	 * cow_slot(CoW sector) -> chunk; under ctl_mutex, never under g->lock
	 * (its lock is taken with interrupts enabled).
	 */
	struct xarray cow_slots;
	sector_t phase;

	struct dm_kcopyd_client *kcopyd;
	/* Zero writes of fills (start_zeros()); zero_writes counts them. */
	struct dm_io_client *io_client;
	wait_queue_head_t zero_wait;
	mempool_t pending_pool;
	struct work_struct work;
	/* Fails faults and flushes that waited too long for a daemon. */
	struct delayed_work timeout_work;
	/* 0: wait forever; from the table resumed last; under lock */
	unsigned int daemon_timeout_ms;

	/*
	 * Protects everything below.  Taken from bio completion, so always
	 * with interrupts disabled; never held across anything that sleeps.
	 */
	spinlock_t lock;
	struct rb_root pending;		/* pending chunks not yet READY */
	struct list_head fault_queued;	/* PENDING_FAULT_QUEUED */
	struct list_head fault_sent;	/* PENDING_FAULT_SENT */
	struct list_head to_fill;	/* COPYING (granted or MAP taken), fill
					 * not begun (a covering write issued
					 * by map() fills it from no list)
					 */
	struct list_head copy_wait;	/* COPYING, waiting for a copy slot */
	struct list_head fill_read;	/* COPYING, merged fill's read done */
	struct list_head copy_done;	/* COPYING, copy or write finished */
	struct list_head ready;		/* READY, message not yet read */
	struct list_head copy_failed;	/* COPY_FAILED, message not yet read */
	struct bio_list commit_wait;	/* flush/FUA bios waiting for a commit */
	struct bio_list commit_released;
	/*
	 * ready_seq numbers chunks in the order their data landed (assigned
	 * when the fill completes, before the READY message is queued, since
	 * a covering write has completed to its submitter by then); remaps
	 * are published and READY messages go out in that order, so "every
	 * READY <= seq" is a prefix.
	 */
	u64 ready_seq;
	u64 published_seq;		/* remaps of every seq <= this are in */
	u64 committed_seq;		/* daemon: READY <= this are durable */
	/*
	 * The daemon attached now has been told of every READY <= told_seq:
	 * the sequence a COMMIT may ask for, and a COMMITTED may claim.
	 */
	u64 told_seq;
	u64 replay_next;		/* next chunk to replay as READY */
	u64 replay_seq;			/* published_seq when the replay began */
	u64 fill_next;			/* next chunk to replay as FILLING */
	bool replaying;
	bool replaying_fills;		/* first part of the replay */
	bool hello_pending;
	bool commit_wanted;
	/*
	 * A resize asked for (dmsetup message resize), not yet answered by a
	 * daemon: to be sent (again, to a new daemon) while resize_pending.
	 */
	sector_t resize_to;
	bool resize_pending;
	bool ctl_open;
	bool attached;
	bool dead;			/* no target left; set under ctl_mutex too */
	bool drained;			/* dead, and every message queued: EOF */
	/*
	 * A target whose noflush suspend began (presuspend) and has not
	 * ended (postsuspend, presuspend_undo, resume, dtr).  Bios that would
	 * wait for the daemon go back to device-mapper while it says the
	 * suspend is still a noflush one: see group_requeueing().
	 */
	struct dm_target *noflush_ti;
	bool full;			/* the daemon refused a fault: no space */
	bool failing;			/* a commit failed, none succeeded since */
	/* A target of the live table: its event_work raises dm events. */
	struct cow_target *event_target;
	unsigned int copies;		/* copies in flight: kcopyd or merged */
	unsigned int zero_writes;	/* dm-io zero writes in flight */
	unsigned int faults;		/* pending chunks in FAULT states */
	unsigned long detached_since;	/* jiffies when the last daemon left */
	unsigned long commit_wait_since; /* jiffies of the oldest commit waiter */

	/*
	 * Unused granted locations: runs of consecutive CoW locations, the
	 * oldest at grant_head; first writes take them in order.
	 */
	struct {
		sector_t sector;
		u32 count;
	} grants[COW_GRANT_RUNS];
	unsigned int grant_head, grant_runs;
	unsigned int granted;		/* locations in all runs */

	/* counters, under lock */
	u64 nr_mapped;
	u64 nr_commits;
	u64 nr_rejected;
	u64 nr_copy_errors;
	u64 nr_commit_errors;
	u64 nr_failed_faults;
	u64 nr_timed_out;
	u64 nr_dropped;
	/*
	 * Every constructed target, of the live and of inactive tables, as
	 * an interval tree of the sectors each serves; under lock.
	 */
	struct rb_root_cached targets_tree;

	struct mutex ctl_mutex;		/* serialises control-device I/O */
	wait_queue_head_t wait;		/* readers and pollers */
	/*
	 * COW_MSG_BATCH messages: one read() or write() step, under
	 * ctl_mutex.  Allocated with the group, so that reading and writing
	 * never fail for want of memory to hold them (MAP and LOAD still
	 * allocate xarray entries, and fail alone with -ENOMEM).
	 */
	struct cow_msg *ctl_msgs;
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
	struct rb_node it_node;		/* in group->targets_tree */
	sector_t it_last;		/* interval tree: last sector of subtree */
	struct dm_target *ti;
	struct cow_group *group;
	struct work_struct event_work;	/* dm_table_event() for the group */
	struct dm_dev *base;
	struct dm_dev *cow;
	unsigned int daemon_timeout_ms;	/* feature argument, 0 if not given */
	bool read_only;			/* the table is read-only: refuse writes */
	bool discard_passdown;		/* writable, and the CoW device takes discards */
	dev_t md_dev;
};

/* per-bio data */
struct cow_bio {
	struct pending_chunk *covering;	/* whole-chunk write of a fresh chunk */
	u64 commit_seq;			/* flush/FUA: the commit it waits for */
};

enum commit_hold {
	COMMIT_NOT_NEEDED,		/* nothing to wait for: issue the bio */
	COMMIT_PARKED,			/* parked until a COMMITTED covers it */
	COMMIT_REQUEUE,			/* noflush suspend: hand the bio back */
};

extern struct mutex cow_groups_mutex;
extern struct kmem_cache *pending_cache;
extern struct workqueue_struct *cow_wq;

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

/* The index of a CoW location in g->cow_slots. */
static inline unsigned long cow_slot(struct cow_group *g, sector_t cow_sector)
{
	return (cow_sector - g->phase) >> g->chunk_shift;
}

/* Length of a chunk on the device: the last chunk may be partial. */
static inline sector_t chunk_len(struct cow_group *g, u64 chunk)
{
	sector_t start = chunk_to_sector(g, chunk);
	sector_t dev = READ_ONCE(g->dev_sectors);

	return start < dev ? min_t(sector_t, g->chunk_sectors, dev - start) : 0;
}

/* How much of a chunk is on the base; the rest reads as zeros. */
static inline sector_t chunk_base_len(struct cow_group *g, u64 chunk)
{
	sector_t start = chunk_to_sector(g, chunk);

	return start < g->base_sectors ?
	       min_t(sector_t, g->chunk_sectors, g->base_sectors - start) : 0;
}

/*
 * A write of the whole chunk fills its CoW location by itself: no copy.
 * Not a FUA write, which must wait for the commit that maps the chunk;
 * nor one of a partial last chunk, whose location's tail must read as
 * zeros if the device grows (start_copy() zeroes it).
 */
static inline bool cow_bio_covers_chunk(struct cow_group *g, struct bio *bio,
					u64 chunk)
{
	return bio_op(bio) == REQ_OP_WRITE && !(bio->bi_opf & REQ_FUA) &&
	       bio->bi_iter.bi_sector == chunk_to_sector(g, chunk) &&
	       bio_sectors(bio) == g->chunk_sectors;
}

static inline bool remap_lookup(struct cow_group *g, u64 chunk, sector_t *cow_sector)
{
	void *entry = xa_load(&g->remaps, chunk);

	if (!xa_is_value(entry))
		return false;
	*cow_sector = xa_to_value(entry);
	return true;
}

static inline void remap_bio_to_cow(struct cow_group *g, struct bio *bio,
			     sector_t cow_sector)
{
	sector_t offset = bio->bi_iter.bi_sector & (g->chunk_sectors - 1);

	bio_set_dev(bio, g->cow_bdev);
	bio->bi_iter.bi_sector = cow_sector + offset;
}

/* dm-cow-group.c */
bool ident_valid(const char *ident);
struct cow_group *group_find(const char *ident);
struct cow_group *group_create(const char *ident, struct cow_target *ct,
			       u32 chunk_sectors, char **error);
void group_put(struct cow_group *g);
void group_leave(struct cow_target *ct);
struct pending_chunk *pending_find(struct cow_group *g, u64 chunk);
struct pending_chunk *pending_find_from(struct cow_group *g, u64 chunk);
void pending_insert(struct cow_group *g, struct pending_chunk *new);
void pending_unlink(struct cow_group *g, struct pending_chunk *pc);
bool pending_take_grant(struct cow_group *g, struct pending_chunk *pc);
void group_kick(struct cow_group *g);
bool group_requeueing(struct cow_group *g);
void group_raise_event(struct cow_group *g);
void arm_daemon_timeout(struct cow_group *g);
void fail_bios(struct bio_list *bios, blk_status_t status);
void requeue_bios(struct bio_list *bios);
enum commit_hold park_for_commit(struct cow_group *g, struct bio *bio);
bool release_committed(struct cow_group *g);
void group_add_target(struct cow_group *g, struct cow_target *ct);
bool group_targets_cover(struct cow_group *g, sector_t start, sector_t end);
void fill_done(struct cow_group *g, struct pending_chunk *pc, int error);
void cow_fault_init(void);
void cow_zero_init(void);
void cow_fault_exit(void);

/* dm-cow-ctl.c */
int cow_ctl_add(struct cow_group *g);
int ctl_request_resize(struct cow_group *g, const char *sectors);
void cow_ctl_remove(struct cow_group *g);
int cow_ctl_init(void);
void cow_ctl_exit(void);

#endif /* DM_COW_H */
