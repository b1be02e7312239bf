// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowctl check, dump and merge: offline commands on a store that no device
 * uses, through the store's plugin (see offline.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkdev.h"
#include "cowctl-store.h"
#include "json-out.h"
#include "log.h"
#include "image-lock.h"
#include "offline.h"
#include "progress.h"
#include "store-check.h"
#include "store-unused.h"
#include "cow-store.h"

unsigned int offline_flags(const struct cowctl_args *a)
{
	return OFFLINE_READ_ONLY | (a->ignore_base_mtime ? OFFLINE_IGNORE_BASE_MTIME : 0);
}

/* Offline commands must not race a cowd that serves the store. */
int refuse_if_used(const char *path, const char *what)
{
	char who[300];

	if (!path_in_use(path, who, sizeof(who)))
		return 0;
	log_err("%s %s is in use by %s: remove the device first (cowctl remove)", what, path, who);
	return -EBUSY;
}

int open_store_to_read(struct offline_store *o, const struct cowctl_args *a)
{
	int r;

	if (refuse_if_used(a->store, "store"))
		return -EBUSY;
	r = offline_open(o, a->store, a->base, offline_flags(a), a->base_id);
	if (r) {
		log_err("%s", o->error);
		offline_close(o);
	}
	return r;
}

/* cowctl check: a line that says it all (after what --repair did). */
static void print_check_text(const struct cowctl_args *a, const struct offline_store *o,
			     enum check_result res, const struct check_report *rep,
			     const char *repaired, uint64_t unused)
{
	if (repaired[0])
		printf("%s: repaired: %s\n", a->store, repaired);
	switch (res) {
	case CHECK_CLEAN:
		printf("%s: %s store, consistent: %llu chunks mapped, base %s\n", a->store,
		       o->p->name, (unsigned long long)rep->mapped, o->base_path);
		break;
	case CHECK_LEAKS:
		printf("%s: %s store, consistent, but %s\n", a->store, o->p->name, rep->first);
		break;
	case CHECK_CORRUPT:
		printf("%s: %s store, CORRUPT: %s (%llu problem%s)\n", a->store, o->p->name,
		       rep->first, (unsigned long long)rep->problems, rep->problems == 1 ? "" : "s");
		break;
	}
	if (unused)
		printf("%s: %llu KiB of the file hold nothing (cowctl check --repair gives them back)\n",
		       a->store, (unsigned long long)(unused >> 10));
}

/* cowctl check --json: one object; the exit status says the same. */
static void print_check_json(const struct cowctl_args *a, const struct offline_store *o,
			     enum check_result res, const struct check_report *rep,
			     const char *repaired, uint64_t unused)
{
	static const char *const words[] = {
		[CHECK_CLEAN] = "clean", [CHECK_LEAKS] = "leaks", [CHECK_CORRUPT] = "corrupt",
	};
	struct json_object *j = json_object_new_object();

	json_object_object_add(j, "store", json_object_new_string(a->store));
	json_object_object_add(j, "format", json_object_new_string(o->p->name));
	json_object_object_add(j, "base", json_object_new_string(o->base_path));
	json_object_object_add(j, "result", json_object_new_string(words[res]));
	json_add_u64(j, "chunks_mapped", rep->mapped);
	json_add_u64(j, "problems", rep->problems);
	json_object_object_add(j, "first_problem",
			       json_object_new_string(res == CHECK_CLEAN ? "" : rep->first));
	if (a->repair)
		json_object_object_add(j, "repaired", json_object_new_string(repaired));
	json_add_u64(j, "unused_bytes", unused);
	json_out(j, JSON_OUTPUT_FLAGS);
	json_object_put(j);
}

/*
 * check --repair: have the plugin give back the leaked space, then check
 * again.  What it did goes to @done; *@res is the new verdict.
 */
static int repair_leaks(const struct cowctl_args *a, struct offline_store *o,
			struct check_report *rep, enum check_result *res, char *done, size_t len)
{
	int r;

	if (!COW_PLUGIN_HAS(o->p, repair)) {
		log_err("%s: the %s format has no repair for leaks", a->store, o->p->name);
		return -EOPNOTSUPP;
	}
	o->s.error[0] = 0;
	r = o->p->repair(&o->s);
	if (r) {
		log_err("%s: repair failed: %s", a->store, o->s.error[0] ? o->s.error : strerror(-r));
		return r;
	}
	snprintf(done, len, "%s", o->s.error[0] ? o->s.error : "leaks given back");
	*res = store_check(o, rep);
	return 0;
}

/*
 * The file's space that holds nothing (left by a cowd that could not give
 * it back), in *@unused; check --repair gives it back first, and says so
 * in @done.
 */
static int unused_space(const struct cowctl_args *a, struct offline_store *o, uint64_t *unused,
			char *done, size_t len)
{
	size_t n = strlen(done);
	uint64_t held, left;
	int r;

	r = store_unused(o, a->repair, &held, &left);
	if (r)
		return r;
	*unused = a->repair ? left : held;
	if (a->repair && held)
		snprintf(done + n, len - n, "%s%llu KiB held for nothing given back", n ? "; " : "",
			 (unsigned long long)((held - left) >> 10));
	return 0;
}

int cmd_check(const struct cowctl_args *a)
{
	struct offline_store o;
	struct check_report rep;
	enum check_result res;
	char repaired[COW_ERROR_MAX] = "", why[256];
	uint64_t unused = 0;
	int r, lock_fd = -1;

	if (refuse_if_used(a->store, "store"))
		return CHECK_EXIT_FAILED;
	/* --repair writes: not while QEMU (or a cowd) has the image open. */
	if (a->repair) {
		lock_fd = image_lock(a->store, why, sizeof(why));
		if (lock_fd < 0) {
			log_err("%s: not repaired: %s", a->store, why);
			return CHECK_EXIT_FAILED;
		}
	}
	r = offline_open(&o, a->store, a->base,
			 offline_flags(a) & ~(a->repair ? OFFLINE_READ_ONLY : 0), a->base_id);
	if (r) {
		/* The plugin's open() refuses damage with EINVAL (the base was
		 * found); anything else stopped the check itself. */
		int corrupt = r == -EINVAL && o.s.base_fd >= 0;

		log_err("%s", o.error);
		if (a->json) {
			struct json_object *j = json_object_new_object();

			json_object_object_add(j, "store", json_object_new_string(a->store));
			json_object_object_add(j, "result",
					       json_object_new_string(corrupt ? "corrupt" : "failed"));
			json_add_u64(j, "problems", corrupt);
			json_object_object_add(j, "first_problem", json_object_new_string(o.error));
			json_out(j, JSON_OUTPUT_FLAGS);
			json_object_put(j);
		}
		offline_close(&o);
		if (lock_fd >= 0)
			close(lock_fd);
		return corrupt ? CHECK_EXIT_CORRUPT : CHECK_EXIT_FAILED;
	}
	res = store_check(&o, &rep);
	r = 0;
	if (a->repair && res == CHECK_LEAKS)
		r = repair_leaks(a, &o, &rep, &res, repaired, sizeof(repaired));
	if (!r && res != CHECK_CORRUPT)
		r = unused_space(a, &o, &unused, repaired, sizeof(repaired));
	if (a->json)
		print_check_json(a, &o, res, &rep, repaired, unused);
	else
		print_check_text(a, &o, res, &rep, repaired, unused);
	offline_close(&o);
	if (lock_fd >= 0)
		close(lock_fd);
	if (r)
		return CHECK_EXIT_FAILED;
	return res == CHECK_CLEAN ? CHECK_EXIT_CLEAN :
	       res == CHECK_LEAKS ? CHECK_EXIT_LEAKS : CHECK_EXIT_CORRUPT;
}

struct dump_ctx {
	uint64_t chunk_bytes;
	int json;
	uint64_t n;
};

static int dump_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct dump_ctx *d = ctx;

	if (d->json)
		printf("%s\n    {\"chunk\": %llu, \"offset\": %llu, \"cow_offset\": %llu}",
		       d->n ? "," : "", (unsigned long long)chunk,
		       (unsigned long long)(chunk * d->chunk_bytes),
		       (unsigned long long)(sector * COW_SECTOR));
	else
		printf("%llu %llu %llu\n", (unsigned long long)chunk,
		       (unsigned long long)(chunk * d->chunk_bytes),
		       (unsigned long long)(sector * COW_SECTOR));
	d->n++;
	return 0;
}

int cmd_dump(const struct cowctl_args *a)
{
	struct offline_store o;
	struct dump_ctx d = { .json = a->json };
	int r;

	if (open_store_to_read(&o, a))
		return 1;
	d.chunk_bytes = (uint64_t)o.s.chunk_sectors * COW_SECTOR;
	/* Streamed, not built: a store may hold millions of mappings. */
	if (a->json) {
		json_out_begun = 1;
		printf("{\n  \"store\": ");
		json_print_string(stdout, a->store);
		printf(",\n  \"format\": ");
		json_print_string(stdout, o.p->name);
		printf(",\n  \"base\": ");
		json_print_string(stdout, o.base_path);
		printf(",\n  \"base_bytes\": %llu,\n  \"chunk_bytes\": %llu,\n  \"mappings\": [",
		       (unsigned long long)o.s.base_size, (unsigned long long)d.chunk_bytes);
	} else {
		printf("# store %s: %s format, base %s (%llu bytes), chunks of %llu bytes\n"
		       "# chunk offset cow_offset (bytes)\n",
		       a->store, o.p->name, o.base_path, (unsigned long long)o.s.base_size,
		       (unsigned long long)d.chunk_bytes);
	}
	r = o.p->for_each_mapping(&o.s, dump_one, &d);
	if (a->json)
		printf("\n  ],\n  \"chunks_mapped\": %llu\n}\n", (unsigned long long)d.n);
	else
		printf("# %llu chunks mapped\n", (unsigned long long)d.n);
	if (r)
		log_err("%s: cannot list the mappings: %s", a->store, o.s.error);
	offline_close(&o);
	return r ? 1 : 0;
}

/* ---- merge ---------------------------------------------------------------- */

/* Copy the base into a new image; zero blocks stay holes in a file. */
static int copy_base(int from, int to, uint64_t size, int out_is_file, struct progress *pg)
{
	const size_t step = 1 << 20;
	char *buf = malloc(step);
	uint64_t off;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (off = 0; off < size && !r; off += step) {
		size_t len = size - off < step ? (size_t)(size - off) : step;

		r = pread_full(from, buf, len, off);
		if (!r && !(out_is_file && buf_is_zero(buf, len)))
			r = pwrite_full(to, buf, len, off);
		progress_show(pg, len);
	}
	free(buf);
	return r;
}

struct overlay_ctx {
	struct offline_store *o;
	int out_fd;
	char *buf;
	struct progress *pg;
	int err;
};

/* Write one mapped chunk of the store over the image (clipped at its end). */
static int overlay_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	struct overlay_ctx *c = ctx;
	uint64_t cb = (uint64_t)c->o->s.chunk_sectors * COW_SECTOR, off = chunk * cb;
	uint64_t len = cb;
	int r;

	if (off >= c->o->dev_size)
		return 0;
	if (off + len > c->o->dev_size)
		len = c->o->dev_size - off;
	r = pread_full(c->o->s.cow_fd, c->buf, len, sector * COW_SECTOR);
	if (!r)
		r = pwrite_full(c->out_fd, c->buf, len, off);
	if (r)
		c->err = r;
	progress_show(c->pg, 1);
	return r;
}

/* What the store holds: sectors of data at cow_sector, or of zeros. */
static int overlay_extent(void *ctx, uint64_t sector, uint64_t count, uint64_t cow_sector)
{
	struct overlay_ctx *c = ctx;
	uint64_t step = (uint64_t)c->o->s.chunk_sectors, done;
	int r = 0;

	for (done = 0; done < count && !r; done += step) {
		uint64_t n = count - done < step ? count - done : step;
		uint64_t off = (sector + done) * COW_SECTOR, len = n * COW_SECTOR;

		if (off >= c->o->dev_size)
			break;
		if (off + len > c->o->dev_size)
			len = c->o->dev_size - off;
		if (cow_sector == COW_EXTENT_ZERO)
			memset(c->buf, 0, len);
		else
			r = pread_full(c->o->s.cow_fd, c->buf, len, (cow_sector + done) * COW_SECTOR);
		if (!r)
			r = pwrite_full(c->out_fd, c->buf, len, off);
		progress_show(c->pg, n);
	}
	if (r)
		c->err = r;
	return r;
}

static int count_one(void *ctx, uint64_t chunk, uint64_t sector)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

static int count_extent(void *ctx, uint64_t sector, uint64_t count, uint64_t cow_sector)
{
	*(uint64_t *)ctx += count;
	return 0;
}

/* Whether @a and @b are the same file. */
static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/*
 * Open the base for an in-place merge: the file the user named, which must
 * be the one the plugin checked (and the one the store's header names, if
 * it names one: an untrusted store must not choose what root overwrites),
 * and which no device may be using.
 */
static int in_place_target(struct offline_store *o, int *out_fd)
{
	struct stat named, opened, checked;
	int r;

	if (fstat(o->s.base_fd, &checked)) {
		r = -errno;
		log_err("base %s: %s", o->base_path, strerror(errno));
		return r;
	}
	if (o->dev_size > o->s.base_size) {
		log_err("the store grew past its base (%llu bytes > %llu): merge it into a new "
			"image (--out FILE) instead", (unsigned long long)o->dev_size,
			(unsigned long long)o->s.base_size);
		return -EOPNOTSUPP;
	}
	if (o->named_base[0] && (stat(o->named_base, &named) || !same_file(&named, &checked))) {
		log_err("the store was made over %s, not %s: merge --in-place writes only into "
			"the store's own base", o->named_base, o->base_path);
		return -EINVAL;
	}
	r = refuse_if_used(o->base_path, "base");
	if (r)
		return r;
	*out_fd = open(o->base_path, O_RDWR | O_CLOEXEC);
	if (*out_fd < 0) {
		r = -errno;
		log_err("base %s: cannot open it for writing: %s", o->base_path, strerror(errno));
		return r;
	}
	if (fstat(*out_fd, &opened) || !same_file(&opened, &checked)) {
		log_err("base %s changed while it was checked", o->base_path);
		return -EAGAIN;
	}
	return 0;
}

int cmd_merge(const struct cowctl_args *a)
{
	struct offline_store o;
	struct progress pg;
	struct overlay_ctx c = { .o = &o };
	uint64_t mapped = 0, out_size;
	const char *target = NULL;
	int out_fd = -1, out_is_file = 0, created = 0, r;
	struct stat st;

	if (refuse_if_used(a->store, "store") || (a->in_place && refuse_if_used(a->base, "base")))
		return 1;
	/* Read-only: merge never changes its source. */
	r = offline_open(&o, a->store, a->base, offline_flags(a), a->base_id);
	if (r) {
		log_err("%s", o.error);
		goto out;
	}
	if (a->in_place) {
		target = o.base_path;
		r = in_place_target(&o, &out_fd);
	} else {
		target = a->out;
		if (stat(target, &st) == 0 && !S_ISBLK(st.st_mode)) {
			log_err("%s exists: merge writes a new image (or a block device)", target);
			r = -EEXIST;
			goto out;
		}
		out_fd = open(target, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (out_fd < 0) {
			r = -errno;
			log_err("%s: %s", target, strerror(errno));
			goto out;
		}
		created = fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode);
		out_is_file = created;
		if (out_is_file && ftruncate(out_fd, (off_t)o.dev_size) < 0) {
			r = -errno;
			log_err("%s: %s", target, strerror(errno));
		} else if (!out_is_file && (fd_size(out_fd, &out_size, NULL) || out_size < o.dev_size)) {
			r = -ENOSPC;
			log_err("%s is smaller than the device (%llu bytes)", target,
				(unsigned long long)o.dev_size);
		} else if (!out_is_file && o.dev_size > o.s.base_size) {
			r = -EOPNOTSUPP;
			log_err("the store grew past its base: merge it into a new file (--out FILE), "
				"whose end reads as zeros");
		}
		progress_start(&pg, "copying the base", o.s.base_size);
		if (!r)
			r = copy_base(o.s.base_fd, out_fd, o.s.base_size, out_is_file, &pg);
		if (r)
			log_err("copying the base to %s: %s", target, strerror(-r));
	}
	if (r)
		goto out;
	c.out_fd = out_fd;
	c.buf = malloc((size_t)o.s.chunk_sectors * COW_SECTOR);
	c.pg = &pg;
	progress_start(&pg, "merging changes ", 0);
	if (!c.buf) {
		r = -ENOMEM;
	} else if (COW_PLUGIN_HAS(o.p, for_each_extent)) {
		/* Sector by sector: partly written chunks, chunks of zeros. */
		r = o.p->for_each_extent(&o.s, count_extent, &pg.total);
		if (!r)
			r = o.p->for_each_extent(&o.s, overlay_extent, &c);
		mapped = pg.total * COW_SECTOR;
	} else {
		r = o.p->for_each_mapping(&o.s, count_one, &pg.total);
		if (!r)
			r = o.p->for_each_mapping(&o.s, overlay_one, &c);
		mapped = pg.total * o.s.chunk_sectors * COW_SECTOR;
	}
	free(c.buf);
	if (!r && fsync(out_fd) < 0)
		r = -errno;
	if (r) {
		log_err("merging into %s: %s", target, strerror(-(c.err ? c.err : r)));
		goto out;
	}
	printf("%s: %llu bytes of changes (%s store) merged into %s%s\n", a->store,
	       (unsigned long long)mapped, o.p->name, a->in_place ? "the base " : "", target);
	if (a->in_place)
		printf("the base changed: stores made over its old content no longer match it\n");
out:
	if (out_fd >= 0)
		close(out_fd);
	if (r && created)
		unlink(target);
	offline_close(&o);
	return r ? 1 : 0;
}
