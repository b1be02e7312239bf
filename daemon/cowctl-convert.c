// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowctl convert: a store in another format (or chunk size) over the same
 * base, offline, like qemu-img convert -B.  The source is read through its
 * plugin; each chunk it changes is written whole into the new store (the
 * base's bytes with the source's changes over them), through the new
 * store's plugin, with the order cowd keeps: data synced, then commit().
 * The source is never written; a failed conversion leaves no new store.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkdev.h"
#include "cow-store.h"
#include "cowctl-convert.h"
#include "cowctl-store.h"
#include "log.h"
#include "offline.h"
#include "progress.h"

/* Commit every so many chunks: a plugin keeps each batch in memory. */
#define CONVERT_BATCH 4096

/* A run of device sectors the source holds: data at cow, or zeros. */
struct extent {
	uint64_t sector, count, cow;
};

struct extents {
	struct extent *v;
	size_t n, max;
	uint32_t chunk_sectors;	/* the source's, for for_each_mapping() */
};

static int add_extent(void *ctx, uint64_t sector, uint64_t count, uint64_t cow)
{
	struct extents *e = ctx;

	if (array_reserve(&e->v, &e->max, e->n, sizeof(*e->v)))
		return -ENOMEM;
	e->v[e->n++] = (struct extent){ sector, count, cow };
	return 0;
}

static int add_mapping(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct extents *e = ctx;

	return add_extent(ctx, chunk * e->chunk_sectors, e->chunk_sectors, sector);
}

/* Everything the source holds, in ascending order of device sector. */
static int collect_extents(struct offline_store *o, struct extents *e)
{
	e->chunk_sectors = o->s.chunk_sectors;
	if (COW_PLUGIN_HAS(o->p, for_each_extent))
		return o->p->for_each_extent(&o->s, add_extent, e);
	return o->p->for_each_mapping(&o->s, add_mapping, e);
}

struct convert {
	struct offline_store *src;
	struct cow_store dst;
	const struct cow_plugin *dp;
	char base_abs[PATH_MAX];
	char *buf;		/* one chunk of the new store */
	uint64_t chunks;	/* written to the new store */
	unsigned int batch;	/* marked since the last commit */
};

/* Data synced, then the plugin's commit: what cowd guarantees plugins. */
static int commit_batch(struct convert *c)
{
	int r;

	if (fdatasync(c->dst.cow_fd) < 0)
		return cow_store_error(&c->dst, -errno, "cannot sync the new store: %s",
				       strerror(errno));
	r = c->dp->commit(&c->dst);
	c->batch = 0;
	return r;
}

/*
 * Write chunk @chunk of the new store: the base's bytes (zeros past its
 * end), then the source's extents from @e->v[*first] on that overlap it.
 */
static int convert_chunk(struct convert *c, const struct extents *e, size_t *first,
			 uint64_t chunk)
{
	uint64_t cs = c->dst.chunk_sectors, start = chunk * cs, end = start + cs;
	uint64_t base_sectors = c->src->s.base_size / COW_SECTOR, where;
	size_t i;
	int valid = 0, r = 0;

	memset(c->buf, 0, cs * COW_SECTOR);
	if (start < base_sectors)
		r = pread_full(c->src->s.base_fd, c->buf,
			       ((end < base_sectors ? end : base_sectors) - start) * COW_SECTOR,
			       start * COW_SECTOR);
	if (r)
		return cow_store_error(&c->dst, r, "cannot read the base: %s", strerror(-r));
	/* Extents that end before this chunk are done with. */
	while (*first < e->n && e->v[*first].sector + e->v[*first].count <= start)
		(*first)++;
	for (i = *first; i < e->n && e->v[i].sector < end && !r; i++) {
		const struct extent *x = &e->v[i];
		uint64_t from = x->sector > start ? x->sector : start;
		uint64_t to = x->sector + x->count < end ? x->sector + x->count : end;
		char *dst = c->buf + (from - start) * COW_SECTOR;

		if (x->cow == COW_EXTENT_ZERO)
			memset(dst, 0, (to - from) * COW_SECTOR);
		else
			r = pread_full(c->src->s.cow_fd, dst, (to - from) * COW_SECTOR,
				       (x->cow + from - x->sector) * COW_SECTOR);
	}
	if (r)
		return cow_store_error(&c->dst, r, "cannot read the source store: %s",
				       strerror(-r));
	r = c->dp->locate(&c->dst, chunk, &where, &valid);
	if (r)
		return r;
	r = pwrite_full(c->dst.cow_fd, c->buf, cs * COW_SECTOR, where * COW_SECTOR);
	if (r)
		return cow_store_error(&c->dst, r, "cannot write the new store: %s",
				       strerror(-r));
	r = c->dp->mark(&c->dst, chunk, where);
	if (r)
		return r;
	c->chunks++;
	if (++c->batch == CONVERT_BATCH)
		r = commit_batch(c);
	return r;
}

/* Every chunk of the new store that an extent touches, once, in order. */
static int convert_all(struct convert *c, const struct extents *e)
{
	uint64_t cs = c->dst.chunk_sectors, next = 0, last_chunk;
	uint64_t dev_sectors = c->src->dev_size / COW_SECTOR;
	struct progress pg;
	size_t i, first = 0;
	int r = 0;

	last_chunk = dev_sectors ? (dev_sectors - 1) / cs : 0;
	progress_start(&pg, "converting", e->n);
	for (i = 0; i < e->n && !r; i++) {
		uint64_t chunk = e->v[i].sector / cs, stop;

		progress_show(&pg, 1);
		if (!e->v[i].count)
			continue;
		stop = (e->v[i].sector + e->v[i].count - 1) / cs;
		if (chunk < next)
			chunk = next;
		if (stop > last_chunk)
			stop = last_chunk;
		for (; chunk <= stop && !r; chunk++)
			r = convert_chunk(c, e, &first, chunk);
		if (stop + 1 > next)
			next = stop + 1;
	}
	if (!r)
		r = commit_batch(c);
	return r;
}

/*
 * Open the base again and make the new store at @out in @format, with
 * @chunk_sectors and the base's label @base_id (or NULL).
 */
static int create_target(struct convert *c, const char *out, const char *format,
			 const char *base_id, uint32_t chunk_sectors)
{
	struct offline_store *o = c->src;
	int created = 0, is_file = 0, r;

	if (!realpath(o->base_path, c->base_abs))
		return cow_store_error(&c->dst, -errno, "%s: %s", o->base_path, strerror(errno));
	c->dst.base_fd = open(c->base_abs, O_RDONLY | O_CLOEXEC);
	if (c->dst.base_fd < 0)
		return cow_store_error(&c->dst, -errno, "%s: %s", c->base_abs, strerror(errno));
	c->dst.cow_fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (c->dst.cow_fd < 0)
		return cow_store_error(&c->dst, -errno, "%s: %s%s", out, strerror(errno),
				       errno == EEXIST ? " (convert writes a new store)" : "");
	if (fd_size(c->dst.cow_fd, &c->dst.cow_size, &is_file))
		return cow_store_error(&c->dst, -errno, "%s: %s", out, strerror(errno));
	c->dst.cow_is_file = is_file;
	c->dst.base_size = o->s.base_size;
	c->dst.base_name = c->base_abs;
	c->dst.base_id = base_id;
	c->dst.chunk_sectors = chunk_sectors;
	r = store_open(&o->set, &c->dst, format, &c->dp, &created);
	if (!r && !created) {
		c->dp->close(&c->dst);
		c->dp = NULL;
		r = cow_store_error(&c->dst, -EEXIST, "%s: not blank after it was created", out);
	}
	/* A store grown past its base: the new one holds as much. */
	if (!r && o->dev_size > o->s.base_size) {
		if (!COW_PLUGIN_HAS(c->dp, grow))
			r = cow_store_error(&c->dst, -EOPNOTSUPP,
					    "the store grew past its base (%llu bytes), which a %s store cannot hold",
					    (unsigned long long)o->dev_size, c->dp->name);
		else
			r = c->dp->grow(&c->dst, o->dev_size);
	}
	return r;
}

int cmd_convert(const struct cowctl_args *a)
{
	struct offline_store o;
	struct extents e = { 0 };
	struct convert c = { .src = &o, .dst = { .base_fd = -1, .cow_fd = -1 } };
	struct cow_store_info info;
	const char *base_id = a->base_id;
	char format[32];
	uint32_t chunk;
	int made = 0, r;

	/* Read-only: convert never changes its source. */
	if (open_store_to_read(&o, a))
		return 1;
	chunk = a->chunk_given ? (uint32_t)(a->chunk_bytes / COW_SECTOR) : o.s.chunk_sectors;
	r = collect_extents(&o, &e);
	if (r) {
		log_err("%s: cannot read its mappings: %s", a->store,
			o.s.error[0] ? o.s.error : strerror(-r));
		goto out;
	}
	/* The new store keeps the source's label of its base. */
	if (!a->base_id && !offline_inspect(a->store, format, sizeof(format), &info) &&
	    info.base_id[0])
		base_id = info.base_id;
	r = create_target(&c, a->out, a->format, base_id, chunk);
	made = c.dst.cow_fd >= 0;
	if (!r) {
		c.buf = malloc((size_t)chunk * COW_SECTOR);
		r = c.buf ? convert_all(&c, &e) : -ENOMEM;
	}
	if (r) {
		log_err("%s: %s", a->out, c.dst.error[0] ? c.dst.error : strerror(-r));
		goto out;
	}
	printf("%s (%s) converted to %s (%s, %llu chunks of %u bytes)\n", a->store, o.p->name,
	       a->out, c.dp->name, (unsigned long long)c.chunks, chunk * COW_SECTOR);
out:
	free(c.buf);
	free(e.v);
	if (c.dp)
		c.dp->close(&c.dst);
	if (c.dst.cow_fd >= 0)
		close(c.dst.cow_fd);
	if (c.dst.base_fd >= 0)
		close(c.dst.base_fd);
	if (r && made)
		unlink(a->out);
	offline_close(&o);
	return r ? 1 : 0;
}
