// SPDX-License-Identifier: GPL-2.0-only
/*
 * Opening a store with no device table.  cowd learns the geometry from the
 * kernel; offline tools learn it from the store's header (inspect()) and
 * find the base the header names, or the one the user gives.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blkdev.h"
#include "offline.h"
#include "cow-store.h"

#define HEAD_BYTES (64 * 1024)

static int fail(struct offline_store *o, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct offline_store *o, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(o->error, sizeof(o->error), fmt, ap);
	va_end(ap);
	return err;
}

/*
 * A base named in a header: an absolute name as it is, a relative one next
 * to the store, as qemu and UML resolve it (never from the current
 * directory, where another file of that name may be).
 */
static void resolve_base(const char *store_path, const char *named, char *out, size_t len)
{
	char dir[PATH_MAX];

	if (named[0] == '/') {
		snprintf(out, len, "%s", named);
		return;
	}
	snprintf(dir, sizeof(dir), "%s", store_path);
	snprintf(out, len, "%s/%s", dirname(dir), named);
}

/*
 * Read the first HEAD_BYTES of the store on @fd (@size bytes), find its
 * plugin (*plugin, NULL if none knows it) and what its header says.
 * *blank says whether the store is blank (its first COW_BLANK_BYTES are
 * zeros, as cowd judges).  0, or a negative errno from the read or from
 * inspect().
 */
static int read_header(const struct plugin_set *set, int fd, uint64_t size,
		       const struct cow_plugin **plugin, struct cow_store_info *info, int *blank)
{
	size_t len = size < HEAD_BYTES ? (size_t)size : HEAD_BYTES;
	unsigned char *head = calloc(1, HEAD_BYTES);
	int r;

	*plugin = NULL;
	memset(info, 0, sizeof(*info));
	if (!head)
		return -ENOMEM;
	r = len ? pread_full(fd, head, len, 0) : 0;
	if (!r) {
		/* What cowd calls blank (and would format). */
		*blank = buf_is_zero(head, len < COW_BLANK_BYTES ? len : COW_BLANK_BYTES);
		*plugin = plugins_probe(set, head, len);
		if (*plugin && COW_PLUGIN_HAS(*plugin, inspect))
			r = (*plugin)->inspect(head, len, info);
	}
	free(head);
	return r;
}

int offline_open(struct offline_store *o, const char *store_path, const char *base_path,
		 unsigned int flags, const char *base_id)
{
	int read_only = !!(flags & OFFLINE_READ_ONLY);
	struct cow_store_info info;
	int is_file = 0, blank = 0, r;

	memset(o, 0, sizeof(*o));
	o->s.base_fd = o->s.cow_fd = -1;
	o->s.read_only = read_only;
	o->s.ignore_base_mtime = !!(flags & OFFLINE_IGNORE_BASE_MTIME);
	o->s.base_id = base_id;
	if (plugins_load(&o->set, NULL) <= 0)
		return fail(o, -ENOENT, "no store plugins in %s", o->set.dir);
	o->s.cow_fd = open(store_path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (o->s.cow_fd < 0 || fd_size(o->s.cow_fd, &o->s.cow_size, &is_file))
		return fail(o, -errno, "%s: %s", store_path, strerror(errno));
	o->s.cow_is_file = is_file;
	r = read_header(&o->set, o->s.cow_fd, o->s.cow_size, &o->p, &info, &blank);
	if (r && !o->p)
		return fail(o, r, "%s: cannot read it: %s", store_path, strerror(-r));
	if (!o->p)
		return fail(o, -EINVAL, "%s: %s", store_path,
			    blank ? "blank: no store has been made on it yet" :
				    "not a store in a format any plugin knows");
	if (r)
		return fail(o, r, "%s: cannot read its %s header: %s", store_path, o->p->name,
			    strerror(-r));
	if (info.base_path[0])
		resolve_base(store_path, info.base_path, o->named_base, sizeof(o->named_base));
	if (base_path)
		snprintf(o->base_path, sizeof(o->base_path), "%s", base_path);
	else if (o->named_base[0])
		snprintf(o->base_path, sizeof(o->base_path), "%s", o->named_base);
	else
		return fail(o, -EINVAL, "%s: a %s store does not name its base: give the base too",
			    store_path, o->p->name);
	o->s.base_fd = open(o->base_path, O_RDONLY | O_CLOEXEC);
	if (o->s.base_fd < 0 || fd_size(o->s.base_fd, &o->s.base_size, NULL))
		return fail(o, -errno, "base %s: %s", o->base_path, strerror(errno));
	o->s.base_name = o->base_path;
	o->s.chunk_sectors = info.chunk_sectors ? info.chunk_sectors : OFFLINE_DEFAULT_CHUNK_SECTORS;
	o->nr_chunks = (o->s.base_size + o->s.chunk_sectors * (uint64_t)COW_SECTOR - 1) /
		       (o->s.chunk_sectors * (uint64_t)COW_SECTOR);
	r = o->p->open(&o->s);
	if (r) {
		o->p = NULL;
		return fail(o, r, "%s: %s", store_path, o->s.error[0] ? o->s.error : strerror(-r));
	}
	o->dev_size = o->s.dev_size > o->s.base_size ? o->s.dev_size : o->s.base_size;
	o->nr_chunks = (o->dev_size + o->s.chunk_sectors * (uint64_t)COW_SECTOR - 1) /
		       (o->s.chunk_sectors * (uint64_t)COW_SECTOR);
	r = store_match_base_id(o->p, &o->s, &info);
	if (r)
		return fail(o, r, "%s: %s", store_path, o->s.error);
	return 0;
}

int offline_inspect(const char *path, char *format, size_t len, struct cow_store_info *info)
{
	const struct cow_plugin *p = NULL;
	struct plugin_set set;
	uint64_t size;
	int fd, blank = 1, r;

	memset(info, 0, sizeof(*info));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fd_size(fd, &size, NULL)) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		return r;
	}
	if (plugins_load(&set, NULL) <= 0) {
		close(fd);
		return -ENOENT;
	}
	r = read_header(&set, fd, size, &p, info, &blank);
	if (!r && blank)
		r = -ENOENT;
	else if (!r && !p)
		r = -EINVAL;
	if (p)
		snprintf(format, len, "%s", p->name);
	plugins_unload(&set);
	close(fd);
	return r;
}

void offline_close(struct offline_store *o)
{
	if (o->p && o->s.priv)
		o->p->close(&o->s);
	if (o->s.cow_fd >= 0)
		close(o->s.cow_fd);
	if (o->s.base_fd >= 0)
		close(o->s.base_fd);
	o->s.cow_fd = o->s.base_fd = -1;
	plugins_unload(&o->set);
	o->p = NULL;
}

static int loop_uses(const char *real, char *who, size_t len)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char path[300], backing[PATH_MAX];

		if (strncmp(e->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", e->d_name);
		if (!read_sysfs_line(path, backing, sizeof(backing)) && !strcmp(backing, real)) {
			snprintf(who, len, "/dev/%s", e->d_name);
			found = 1;
		}
	}
	closedir(d);
	return found;
}

int path_in_use(const char *path, char *who, size_t len)
{
	char real[PATH_MAX], holders[128];
	struct stat st;
	DIR *d;
	struct dirent *e;
	int fd;

	if (!realpath(path, real) || stat(real, &st) < 0)
		return 0;
	if (S_ISREG(st.st_mode))
		return loop_uses(real, who, len);
	if (!S_ISBLK(st.st_mode))
		return 0;
	snprintf(holders, sizeof(holders), "/sys/dev/block/%u:%u/holders", major(st.st_rdev),
		 minor(st.st_rdev));
	d = opendir(holders);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] != '.') {
			snprintf(who, len, "/dev/%s", e->d_name);
			closedir(d);
			return 1;
		}
	}
	if (d)
		closedir(d);
	fd = open(real, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd < 0 && errno == EBUSY) {
		snprintf(who, len, "a mount or another exclusive user");
		return 1;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}
