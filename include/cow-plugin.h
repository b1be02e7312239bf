/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm-cow store-format plugin API.
 *
 * A plugin is a shared object exporting cow_plugin_init(), which returns a
 * struct cow_plugin (use COW_PLUGIN_REGISTER).  cowd loads every plugin in
 * its plugin directory, picks the one whose probe() recognises the store, or
 * its default format for a blank store, and then calls it from its single
 * event-loop thread: callbacks never run concurrently.
 *
 * Lifecycle:   probe -> open -> hold* -> { locate | grant | mark | commit | grow }*
 *              [-> for_each_unused, once the device is gone] -> close
 *              (or create -> open ... for a blank store)
 * Offline:     probe -> inspect -> open (read_only) -> for_each_mapping,
 *              for_each_extent, check -> close
 *
 * Compatibility: cowd accepts a plugin whose api_version is
 * COW_PLUGIN_API_VERSION and reads only the first @size bytes of its struct;
 * callbacks added later are optional and appended at the end.  Version 2
 * made s->error 1024 bytes and added the base's label (base_id) to
 * struct cow_store and struct cow_store_info: rebuild a version 1 plugin.
 *
 * The helpers a plugin may call are in cow-store.h (libdmcow-store).
 *
 * The daemon guarantees the ordering that makes stores crash-safe: when
 * commit() is called, the data of every chunk passed to mark() since the
 * last commit is already durable on the CoW device.  commit() must make the
 * marked mappings durable (write and sync its metadata) before returning.
 *
 * All callbacks return 0 or a negative errno; on failure they may explain
 * in s->error (cow_store_error()), which cowd prints.
 */
#ifndef COW_PLUGIN_H
#define COW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define COW_PLUGIN_API_VERSION 2
#define COW_ERROR_MAX 1024
#define COW_SECTOR 512

struct cow_store {
	/* Set by the caller before create/open; never changed by plugins. */
	int base_fd;		/* the base, opened read-only */
	int cow_fd;		/* the CoW store, opened read-write */
	uint64_t base_size;	/* bytes */
	uint64_t cow_size;	/* bytes (a file may grow, a device not) */
	uint32_t chunk_sectors;	/* allocation unit, power of two >= 8 */
	const char *base_name;	/* how users name the base (file path) */
	int cow_is_file;	/* cow_fd is a regular file (may be extended) */

	/* Plugin state. */
	void *priv;
	char error[COW_ERROR_MAX]; /* why the last call failed */

	/*
	 * Set by offline tools (cowctl check, dump, merge): open() must not
	 * write.  Only open, for_each_mapping, for_each_extent, check,
	 * used_bytes and close are called.
	 */
	int read_only;

	/*
	 * Set by cowd --ignore-base-mtime (and cowctl's): the user says the
	 * base is the one the store was made over, though its modification
	 * time says otherwise (a copy that lost it).
	 */
	int ignore_base_mtime;

	/*
	 * Set by --base-id LABEL (at most COW_BASE_ID_MAX bytes): a name the
	 * user gives the base's content.  create() of a format that can
	 * record one does, and inspect() reports it; cowd and cowctl then
	 * refuse a store whose label differs from the one they are given.
	 */
	const char *base_id;

	/*
	 * Set by open() and grow(): the size of the device the store holds,
	 * in bytes, if it can be more than the base's (a store grown by
	 * cowctl resize: past the base's end the device reads as zeros until
	 * written).  A plugin that leaves it 0 holds the base's size.
	 */
	uint64_t dev_size;
};

#define COW_BASE_ID_MAX 63

/* What a store's header says about itself (see inspect()). */
struct cow_store_info {
	uint32_t chunk_sectors;	/* the store's allocation unit; 0: any */
	char base_path[4096];	/* the base the header names; "" if none */
	char base_id[COW_BASE_ID_MAX + 1]; /* the label create() recorded; "" if none */
	uint64_t dev_size;	/* the device it holds, bytes, if grown past the base; else 0 */
};

typedef int (*cow_mapping_fn)(void *ctx, uint64_t chunk, uint64_t sector);

/*
 * @count device sectors from @sector are held by the store: at CoW sector
 * @cow_sector on, or reading as zeros if @cow_sector is COW_EXTENT_ZERO.
 */
typedef int (*cow_extent_fn)(void *ctx, uint64_t sector, uint64_t count, uint64_t cow_sector);
#define COW_EXTENT_ZERO UINT64_MAX

/* @count CoW sectors from @cow_sector on (see for_each_unused()). */
typedef int (*cow_range_fn)(void *ctx, uint64_t cow_sector, uint64_t count);

struct cow_plugin {
	uint32_t api_version;	/* COW_PLUGIN_API_VERSION */
	uint32_t size;		/* sizeof(struct cow_plugin) */
	const char *name;	/* short format name: "uml", "qcow2", ... */
	const char *description;

	/* Required.  Is @head (the store's first @len bytes) ours? 1 or 0. */
	int (*probe)(const void *head, size_t len);

	/* Required.  Write an empty store on s->cow_fd. */
	int (*create)(struct cow_store *s);

	/* Required.  Validate the store against the base and load it. */
	int (*open)(struct cow_store *s);

	/* Required.  Free what open() allocated; no I/O is needed. */
	void (*close)(struct cow_store *s);

	/*
	 * Required.  A first write hit @chunk in the kernel: where does it
	 * live on the CoW store (in 512-byte sectors)?  The chunk may be
	 * mapped already (a write reached it before cowd loaded the store):
	 * then return its location and set *data_valid, since the store holds
	 * its data there and no copy must be made.  Otherwise choose a new
	 * location and leave *data_valid 0.
	 */
	int (*locate)(struct cow_store *s, uint64_t chunk, uint64_t *sector,
		      int *data_valid);

	/* Required.  The chunk's data is in place at @sector: record it. */
	int (*mark)(struct cow_store *s, uint64_t chunk, uint64_t sector);

	/* Required.  Make every mark() so far durable. */
	int (*commit)(struct cow_store *s);

	/* Required.  Call @fn for every committed mapping, in chunk order. */
	int (*for_each_mapping)(struct cow_store *s, cow_mapping_fn fn,
				void *ctx);

	/*
	 * Required.  Every CoW sector locate() returns is congruent to this
	 * value modulo chunk_sectors (the offset of the data area).
	 */
	uint64_t (*data_phase)(struct cow_store *s);

	/* Optional.  Bytes of the store in use (metadata + data). */
	uint64_t (*used_bytes)(struct cow_store *s);

	/*
	 * Optional.  From the store's first @len bytes (at least 64 KiB, or
	 * the whole store), fill @info, so that offline tools can open the
	 * store without a device table.  0 or a negative errno.
	 */
	int (*inspect)(const void *head, size_t len, struct cow_store_info *info);

	/*
	 * Optional.  Deeper checks than open() makes, on an open store
	 * (cowctl check).  0: consistent; 1: consistent but space is leaked
	 * (s->error says how much); negative errno: corrupt (s->error says
	 * why).  The generic checks (mappings in range, in phase, unique)
	 * are made by the caller.
	 */
	int (*check)(struct cow_store *s);

	/*
	 * Optional.  An earlier daemon gave @chunk the location @sector and
	 * the kernel is still filling it: never hand out that location, nor
	 * put metadata over it.  mark(@chunk, @sector) follows if the fill
	 * succeeds.  Called on a freshly opened store, before any locate()
	 * (or again for a location this plugin gave, if the kernel replays
	 * after lost messages).
	 * A plugin whose metadata never moves and whose data locations
	 * depend only on the chunk (like UML's) needs none; others must
	 * provide it, or a restart of cowd with copies in flight may place
	 * metadata where the kernel then writes data.
	 */
	int (*hold)(struct cow_store *s, uint64_t chunk, uint64_t sector);

	/*
	 * Optional.  What the store holds, sector by sector, for offline tools
	 * (cowctl merge) on a store opened read-only: call @fn for each run of
	 * device sectors the store holds, in ascending order, with where it
	 * is.  Sectors in no run read from the base.  Unlike
	 * for_each_mapping() this also reports what a read-only open cannot
	 * turn into whole mapped chunks: partly written chunks (UML) and
	 * chunks that read as zeros (qcow2 zero clusters).  A plugin without
	 * it holds whole chunks only, as for_each_mapping() lists them.
	 */
	int (*for_each_extent)(struct cow_store *s, cow_extent_fn fn, void *ctx);

	/*
	 * Optional.  Hand out, for chunks not known yet, a run of fresh
	 * consecutive locations: at most @max, at least one; *sector is the
	 * first, *count how many.  cowd grants them to the kernel, which
	 * gives them to first writes without asking; each one used comes
	 * back through mark().  Unused ones must not be recorded: a daemon
	 * that restarts finds them free again.  Room must be kept for the
	 * metadata that would map them, as locate() keeps it, for whichever
	 * chunks use them (mark() then takes it).  Keep some of the free
	 * room out of grants (cowd may call this several times in a row): a
	 * first write that faulted before the kernel had grants still needs
	 * a place from locate().  -ENOSPC when there is no room.  Without
	 * it, cowd asks locate() per chunk.
	 */
	int (*grant)(struct cow_store *s, uint64_t max, uint64_t *sector, uint64_t *count);

	/*
	 * Optional, with grant().  Take back the run the last grant() handed
	 * out (the kernel refused it): nothing was written there.
	 */
	void (*ungrant)(struct cow_store *s, uint64_t sector, uint64_t count);

	/*
	 * Optional, with check().  Give back the space check() found leaked
	 * (cowctl check --repair), on a store an offline tool opened to
	 * write: fix the counts, durably, and release the space where it can
	 * (punch holes in a file).  0, with what was done in s->error; or a
	 * negative errno.  What stays leaked, check() reports again.
	 */
	int (*repair)(struct cow_store *s);

	/*
	 * Optional.  Call @fn, in ascending order, for each run of CoW
	 * sectors that holds nothing: no committed mapping's data and no
	 * metadata (room granted, held or grown in advance and not used).
	 * cowd calls it once nothing can write the store any more (the
	 * device is gone, every message was read, the last commit is
	 * durable) and gives that space back to the host: holes punched in
	 * the file behind a loop device.  Nothing may be reported that a
	 * later open would read.
	 */
	int (*for_each_unused)(struct cow_store *s, cow_range_fn fn, void *ctx);

	/*
	 * Optional.  Make the store hold a device of @size bytes, more than
	 * s->dev_size (or the base's size) now, durably before returning,
	 * and set s->dev_size: chunks up to the new end may then be located
	 * and marked.  Called right after a commit, with no mark() since.
	 * Chunks past the base's end read as zeros until written; the kernel
	 * fills their locations with zeros.  The plugin makes the part past
	 * the base's end of the base's partial last chunk read as zeros, if
	 * that chunk is mapped (older modules filled only the base's part).
	 * A power cut leaves the old size or the new.  Without it the store
	 * cannot grow (cowctl resize fails, saying so).
	 */
	int (*grow)(struct cow_store *s, uint64_t size);
};

/* Does plugin @p provide the optional callback @field? */
#define COW_PLUGIN_HAS(p, field)                                              \
	((p)->size >= offsetof(struct cow_plugin, field) + sizeof((p)->field) && \
	 (p)->field)

#define COW_PLUGIN_REGISTER(plugin)                                    \
	const struct cow_plugin *cow_plugin_init(void);                \
	const struct cow_plugin *cow_plugin_init(void) { return &(plugin); }

#endif
