/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * dm-cow control-device protocol, shared by the kernel target and cowd.
 *
 * One character device per group, /dev/dm-cow/IDENT.  read() returns a batch
 * of whole struct cow_msg (kernel -> daemon), write() takes a batch (daemon ->
 * kernel); both sizes must be multiples of sizeof(struct cow_msg).  All
 * fields are little-endian-on-the-host (the two ends always run on the same
 * machine), with explicit widths and no implicit padding.
 *
 * Conversation:
 *   open        kernel queues HELLO (geometry) as the first message to read
 *   ATTACH      first message the daemon writes; carries its version and the
 *               phase of its data area; nothing else is accepted before it
 *   FAULT       kernel: a write hit this unmapped chunk; answer with MAP or
 *               FAIL
 *   MAP         daemon: the chunk lives at this CoW sector; the kernel copies
 *               the base chunk there (unless MAP_DATA_VALID), zeros past
 *               the base's end, and then lets the queued bios through.  The
 *               location must hold the chunk's part of the device; a whole
 *               chunk, if the device is to grow over a partial last one
 *   READY       kernel: the chunk's data is in place at its CoW location and
 *               bios now go there; the daemon may now commit the mapping
 *   FILLING     kernel, first in every replay (to a new daemon, or again
 *               after a read the daemon did not get): a copy a MAP
 *               started is filling this CoW location (sector) for the
 *               chunk; a READY (maybe the replayed one) or COPY_FAILED
 *               follows, unless the group goes away first.  Until then
 *               nothing else may be placed there, metadata included
 *   COPY_FAILED kernel: filling the chunk's CoW location (sector) failed
 *               with error; its bios failed and the chunk stays unmapped:
 *               the location is the daemon's again, and a later write to
 *               the chunk raises a new FAULT.  Flag COW_COPY_BASE_ERROR:
 *               the base's data could not be read (a daemon that does not
 *               know the flag may ignore it)
 *   COMMIT      kernel: a flush or FUA write waits; commit every READY
 *               with seq <= this one (all were sent before it) and answer
 *               COMMITTED
 *   COMMITTED   daemon: every READY with seq <= this one is durable (may be
 *               sent unasked, e.g. by a commit timer); never more than the
 *               highest seq of a READY or COMMIT read
 *   COMMIT_FAILED daemon: the commit asked for by COMMIT(seq) failed with
 *               error (negative errno); the flushes that needed it fail
 *               with EIO, the group reports "failing" until a COMMITTED
 *   LOAD        daemon: a mapping that already exists in the store (at
 *               start-up); no copy, no READY needed
 *   FAIL        daemon: this fault cannot be served (e.g. -ENOSPC); the
 *               queued bios fail with that error
 *   DROP        daemon: after a table reload made chunks [chunk, chunk +
 *               arg[0]) plain linear segments, forget their remaps; refused
 *               (-EBUSY) if a cow target of any table (live, suspended or
 *               inactive) still covers any of them
 *   GRANT       daemon: arg[0] consecutive free CoW locations from sector on
 *               (host space allocated), which the kernel may give to the
 *               first writes of any chunks without a FAULT: it starts the
 *               fill at once and sends the READY (flag READY_GRANTED) as
 *               for a MAP.  Refused (-EAGAIN) during a replay; locations
 *               the kernel holds, and more than COW_MAX_GRANTED unused
 *               ones, are refused too.  Unused grants are forgotten when
 *               the daemon closes the control device.
 *   RESIZE      kernel: grow the device to sector sectors (chunk: its
 *               chunks), as asked by "dmsetup message DEV 0 resize
 *               SECTORS" (cowctl resize); sent before any FAULT, and
 *               again to a new daemon until answered.  Past the base's
 *               end the device reads as zeros until written
 *   RESIZED     daemon: the store now holds sector sectors, durably (its
 *               answer to RESIZE, error 0), or could not grow (error, a
 *               negative errno, with RESIZE's sector); the kernel then
 *               takes tables up to that size, and the daemon loads one.
 *               Refused (-ENOSPC) if the location of the old last chunk,
 *               partial, is not a whole chunk.  Before it, the daemon makes
 *               what the store holds past the base's end read as zeros
 *               (a location an older module filled only in part)
 *
 * When a daemon (re)attaches, the kernel sends FILLING for every copy in
 * flight, READY (flag READY_REPLAY, seq 0) for every chunk in its remap
 * tree, then FAULT again for every fault not answered yet, and COMMIT if
 * anything is not known to be committed; that COMMIT's seq covers the
 * replayed chunks.  No FAULT comes before the last FILLING and replayed
 * READY, so a new daemon knows every location the kernel holds before it
 * allocates one, and picks up where the old one stopped.
 *
 * The kernel refuses (-EINVAL) a daemon's message with flags other than
 * those defined for its type; a daemon ignores flags it does not know in
 * the kernel's messages.
 */
#ifndef DM_COW_PROTO_H
#define DM_COW_PROTO_H

#include <linux/types.h>

/*
 * 2: replayed READYs carry seq 0, COMMIT's seq covers them; COPY_FAILED,
 *    COMMIT_FAILED
 * 3: FILLING
 * 4: GRANT, READY_GRANTED; later COPY_FAILED's COPY_BASE_ERROR, without a
 *    new version: a daemon ignores flags it does not know in the kernel's
 *    messages, so it must never refuse them; and RESIZE, RESIZED, also
 *    without one: the kernel sends RESIZE only when asked to grow, a
 *    daemon that does not know it skips it (the resize then waits), and
 *    HELLO's chunk count covers a grown device, which an older daemon
 *    refuses to serve
 */
#define COW_PROTO_VERSION 4

/*
 * The largest device a group serves, in sectors: 8 EiB less a sector, so
 * that its size in bytes fits an int64 (qemu's limit too).
 */
#define COW_MAX_DEV_SECTORS ((1ULL << 54) - 1)

/* Unused granted locations the kernel holds at most (per group). */
#define COW_MAX_GRANTED 4096

/* Control devices live at COW_CTL_DIR "/" IDENT. */
#define COW_CTL_DIR "/dev/dm-cow"
#define COW_IDENT_MAX 64

enum cow_msg_type {
	/* kernel -> daemon */
	COW_MSG_HELLO = 1,
	COW_MSG_FAULT = 2,
	COW_MSG_READY = 3,
	COW_MSG_COMMIT = 4,
	COW_MSG_COPY_FAILED = 5,
	COW_MSG_FILLING = 6,
	COW_MSG_RESIZE = 7,
	/* daemon -> kernel */
	COW_MSG_ATTACH = 16,
	COW_MSG_MAP = 17,
	COW_MSG_COMMITTED = 18,
	COW_MSG_LOAD = 19,
	COW_MSG_FAIL = 20,
	COW_MSG_DROP = 21,
	COW_MSG_COMMIT_FAILED = 22,
	COW_MSG_GRANT = 23,
	COW_MSG_RESIZED = 24,
};

/* flags */
#define COW_MAP_DATA_VALID 0x1 /* MAP: data already at the location, no copy */
#define COW_READY_REPLAY 0x2   /* READY: resent to a newly attached daemon */
#define COW_READY_GRANTED 0x4  /* READY, COPY_FAILED: the location was granted */
#define COW_COPY_BASE_ERROR 0x8 /* COPY_FAILED: reading the base failed */

struct cow_msg {
	__u16 version; /* COW_PROTO_VERSION; checked on every message */
	__u16 type;    /* enum cow_msg_type */
	__u32 flags;   /* COW_MAP_*, COW_READY_*, COW_COPY_* */
	__s32 error;   /* FAIL, COPY_FAILED, COMMIT_FAILED, RESIZED: -errno */
	__u32 reserved; /* zero */
	__u64 seq;     /* READY: commit sequence; COMMIT/COMMITTED: covers READY <= seq */
	__u64 chunk;   /* chunk number (base sector / chunk_sectors) */
	/* CoW-device sector: MAP/LOAD/READY/FILLING, GRANT's first;
	 * RESIZE, RESIZED: the device's size
	 */
	__u64 sector;
	__u64 arg[3];  /* HELLO: COW_HELLO_*; ATTACH: phase; DROP, GRANT: count */
};

/*
 * HELLO: geometry of the group.
 *   chunk   number of chunks of the device (the last may be partial):
 *           the base's, or more if the device grew (RESIZE)
 *   sector  size of the base device, in sectors
 *   arg[0]  chunk size in sectors
 *   arg[1]  size of the CoW device, in sectors, when the group was created
 *   arg[2]  (base dev_t << 32) | cow dev_t, both in the kernel's
 *           new_encode_dev() form: major = (d >> 8) & 0xfff,
 *           minor = (d & 0xff) | ((d >> 12) & 0xfff00)
 *   seq     dev_t of the dm device whose table holds the group, same form
 *
 * ATTACH arg[0]: every CoW location the daemon hands out is congruent to
 * this value modulo the chunk size (the offset of its data area); the kernel
 * uses it to index CoW locations and refuse overlapping ones.
 */

static inline unsigned int cow_dev_major(__u32 d)
{
	return (d >> 8) & 0xfff;
}

static inline unsigned int cow_dev_minor(__u32 d)
{
	return (d & 0xff) | ((d >> 12) & 0xfff00);
}

#endif /* DM_COW_PROTO_H */
