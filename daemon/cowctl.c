// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowctl: create, remove and inspect dm-cow devices.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/fs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blkdev.h"
#include "cowctl-args.h"
#include "dm-cow-proto.h"
#include "dmdev.h"
#include "json-out.h"
#include "keyval.h"
#include "log.h"
#include "offline.h"
#include "signature.h"
#include "cowctl-store.h"
#include "cowctl-convert.h"
#include "cowctl-inspect.h"
#include "cowctl-resize.h"
#include "run-status.h"
#include "loopdev.h"
#include "plugin-loader.h"
#include "cow-store.h"


static void usage(FILE *f)
{
	fprintf(f,
		"usage: cowctl COMMAND [ARGS]\n"
		"\n"
		"  create NAME BASE COW [--chunk SIZE] [--format FMT] [--read-only] [--base-ro]\n"
		"                     [--force] [--no-daemon]\n"
		"        make /dev/mapper/NAME: BASE read-only under a private CoW store.\n"
		"        Files are attached to loop devices; a missing COW file is created\n"
		"        (format uml), a blank one is made in FMT.  SIZE: power of two from\n"
		"        4k (default 64k).  --force: format over a signature libblkid finds.\n"
		"        Starts cowd, unless --no-daemon (then: systemctl start cowd@NAME).\n"
		"  remove NAME        flush, remove the device, stop its daemon\n"
		"  status NAME [--json]\n"
		"                     counters of the device's group, in words\n"
		"  list [--json]      the dm-cow devices (with their status, in JSON)\n"
		"  check STORE [BASE] [--json] [--repair]\n"
		"                     check a store offline (exit 3: corrupt, 4: leaks);\n"
		"                     --repair gives leaked space back (qcow2), and space\n"
		"                     held for nothing (packed, qcow2)\n"
		"  dump STORE [BASE] [--json]\n"
		"                     the store's mappings, a chunk a line\n"
		"  info STORE [BASE] [--json]\n"
		"                     format, base, sizes, chunks mapped (like qemu-img info)\n"
		"  map STORE [BASE] [--json]\n"
		"                     the extents the store holds (like qemu-img map)\n"
		"  merge STORE [BASE] --out FILE | STORE BASE --in-place\n"
		"                     the base with the store's changes, as a new image or\n"
		"                     into the base itself\n"
		"  reset NAME         throw away the device's changes\n"
		"  resize NAME [+]SIZE\n"
		"                     grow the device online, to SIZE or by +SIZE: cowd grows\n"
		"                     its store (qcow2 and packed can, uml cannot) and loads a\n"
		"                     larger table; past the base it reads zeros until written\n"
		"  convert STORE [BASE] --format FMT --out NEW [--chunk SIZE]\n"
		"                     the store's changes in a new store of format FMT\n"
		"                     (like qemu-img convert -B BASE)\n"
		"\n"
		"  --ignore-base-mtime (create, check, dump, info, map, merge, convert): use a UML\n"
		"        COW file although its base file was modified after it was made\n"
		"  --base-id LABEL (create, check, dump, info, map, merge, convert): the base's\n"
		"        label; create records it in a new packed store, and a store that\n"
		"        recorded another (or none) is refused\n"
		"\n"
		"Exit status: 0 success, 1 failure, 2 bad usage.  See cowctl(8).\n");
}

/* The directory this program lives in, for finding cowd and the module. */
static void self_dir(char *dir, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", dir, len - 1);
	char *slash;

	if (n <= 0) {
		snprintf(dir, len, ".");
		return;
	}
	dir[n] = 0;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
}

static int run(char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int module_loaded(void)
{
	struct stat st;

	return stat("/sys/module/dm_cow", &st) == 0;
}

static int load_module(void)
{
	char dir[PATH_MAX], ko[PATH_MAX + 64];
	char *modprobe[] = { "modprobe", "-q", "dm-cow", NULL };
	char *dm_mod[] = { "modprobe", "-q", "dm-mod", NULL };
	char *insmod[] = { "insmod", ko, NULL };
	char release[128];
	FILE *f;

	if (module_loaded())
		return 0;
	if (run(modprobe) == 0 && module_loaded())
		return 0;
	/* Running from the build tree: the module built for this kernel. */
	f = fopen("/proc/sys/kernel/osrelease", "re");
	if (!f || !fgets(release, sizeof(release), f)) {
		if (f)
			fclose(f);
		return -ENOENT;
	}
	fclose(f);
	release[strcspn(release, "\n")] = 0;
	self_dir(dir, sizeof(dir));
	snprintf(ko, sizeof(ko), "%s/../kernel/%s/dm-cow.ko", dir, release);
	run(dm_mod);
	if (access(ko, R_OK) == 0 && run(insmod) == 0 && module_loaded())
		return 0;
	log_err("cannot load the dm-cow module (modprobe dm-cow failed; run make install?)");
	return -ENOENT;
}

/*
 * A block device or a file for @path; files get a loop device.  Returns an
 * fd that keeps a loop device alive (or -1 for a block device) in *keep.
 */
static int attach(const char *path, int read_only, dev_t *dev, uint64_t *size, int *keep)
{
	char loop[64];
	struct stat st;
	int fd, r;

	*keep = -1;
	if (stat(path, &st) < 0) {
		log_err("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISREG(st.st_mode)) {
		fd = loop_attach(path, read_only, loop, sizeof(loop));
		if (fd < 0) {
			log_err("%s: cannot attach a loop device: %s", path, strerror(-fd));
			return fd;
		}
		*keep = fd;
	} else if (S_ISBLK(st.st_mode)) {
		fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (fd < 0) {
			log_err("%s: %s", path, strerror(errno));
			return -errno;
		}
	} else {
		log_err("%s: neither a file nor a block device", path);
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || (r = fd_size(fd, size, NULL)) < 0) {
		r = -errno;
		log_err("%s: cannot get its size", path);
		close(fd);
		*keep = -1;
		return r ? r : -EIO;
	}
	*dev = st.st_rdev;
	if (*keep < 0)
		close(fd);
	return 0;
}

/* Zero what makes a store a store, so that the plugin makes a new one. */
static int wipe_store(int fd, int is_file)
{
	static const char zero[1 << 16];
	int i, r = 0;

	if (is_file)
		return ftruncate(fd, 0) < 0 ? -errno : 0;
	for (i = 0; i < 16 && !r; i++)
		r = pwrite_full(fd, zero, sizeof(zero), (uint64_t)i * sizeof(zero));
	return r;
}

/* Where init_store() makes a store. */
enum store_init {
	STORE_NEW,	/* a new file: asking for a COW file that is missing makes it */
	STORE_BLANK,	/* a blank file or device (all zeros), as it is */
	STORE_RESET,	/* over an existing store, whose changes are thrown away */
};

/* Make an empty store in @format at @cow for @base, labelled @base_id (or NULL). */
static int init_store(const char *base, const char *cow, uint64_t chunk_sectors,
		      const char *format, const char *base_id, enum store_init how)
{
	struct plugin_set set;
	struct cow_store s = { .base_fd = -1, .cow_fd = -1 };
	const struct cow_plugin *p;
	char base_abs[PATH_MAX];
	int fresh = how == STORE_NEW, created, is_file = 0, r;

	if (!realpath(base, base_abs)) {
		log_err("%s: %s", base, strerror(errno));
		return -errno;
	}
	s.base_fd = open(base_abs, O_RDONLY | O_CLOEXEC);
	if (s.base_fd < 0 || fd_size(s.base_fd, &s.base_size, NULL)) {
		log_err("%s: %s", base, strerror(errno));
		return -errno;
	}
	s.cow_fd = open(cow, O_RDWR | O_CLOEXEC | (fresh ? O_CREAT | O_EXCL : 0), 0600);
	if (s.cow_fd < 0 || fd_size(s.cow_fd, &s.cow_size, &is_file)) {
		r = -errno;
		log_err("%s: cannot %s: %s", cow, fresh ? "create it" : "open it", strerror(errno));
		close(s.base_fd);
		return r;
	}
	s.cow_is_file = is_file;
	s.base_name = base_abs;
	s.base_id = base_id;
	s.chunk_sectors = (uint32_t)chunk_sectors;
	r = how == STORE_RESET ? wipe_store(s.cow_fd, is_file) : 0;
	if (r)
		log_err("%s: cannot clear the store: %s", cow, strerror(-r));
	else if (how == STORE_RESET && is_file)
		s.cow_size = 0;
	if (!r && plugins_load(&set, NULL) <= 0) {
		log_err("no store plugins in %s", set.dir);
		r = -ENOENT;
	} else if (!r) {
		r = store_open(&set, &s, format ? format : COW_DEFAULT_FILE_FORMAT, &p, &created);
		if (r)
			log_err("%s: %s", cow, s.error);
		else
			p->close(&s);
		plugins_unload(&set);
	}
	close(s.base_fd);
	close(s.cow_fd);
	if (r && fresh)
		unlink(cow);
	return r;
}

static int start_daemon(const char *name, int ignore_base_mtime, const char *base_id)
{
	char dir[PATH_MAX], cowd[PATH_MAX + 16], pidfile[128], logfile[128];
	char *argv[10] = { cowd, "--pidfile", pidfile, "--log-file", logfile };
	int n = 5;

	self_dir(dir, sizeof(dir));
	snprintf(cowd, sizeof(cowd), "%s/cowd", dir);
	if (access(cowd, X_OK))
		snprintf(cowd, sizeof(cowd), "cowd");
	mkdir(RUN_DIR, 0700);
	snprintf(pidfile, sizeof(pidfile), RUN_DIR "/%s.pid", name);
	snprintf(logfile, sizeof(logfile), RUN_DIR "/%s.log", name);
	if (ignore_base_mtime)
		argv[n++] = "--ignore-base-mtime";
	if (base_id) {
		argv[n++] = "--base-id";
		argv[n++] = (char *)base_id;
	}
	argv[n++] = (char *)name;
	argv[n] = NULL;
	return run(argv);
}

/* What a dm-cow device is made of. */
struct device_spec {
	const char *name, *base, *cow;
	uint64_t chunk_sectors;
	const char *features;	/* optional feature arguments, e.g. "1 daemon_timeout=5000" */
	int read_only;
	int ignore_base_mtime;	/* cowd --ignore-base-mtime */
	const char *base_id;	/* cowd --base-id */
	int no_daemon;		/* leave serving it to cowd@NAME or cowd NAME */
};

/*
 * The device's size: the base's, or the store's if it grew past it
 * (cowctl resize), as qemu takes an overlay's own virtual size.
 */
static uint64_t device_sectors(const char *cow, uint64_t base_size)
{
	struct cow_store_info info;
	char format[32];

	if (!offline_inspect(cow, format, sizeof(format), &info) && info.dev_size > base_size)
		return info.dev_size / COW_SECTOR;
	return base_size / COW_SECTOR;
}

/*
 * Attach BASE and COW, load the table, start cowd (unless no_daemon: the
 * device then goes live when a daemon serves it).  0 or 1 (said why).
 */
static int make_device(const struct device_spec *d)
{
	uint64_t base_size, cow_size;
	int base_keep = -1, cow_keep = -1, r;
	char params[512];
	dev_t base_dev, cow_dev;

	if (attach(d->base, 1, &base_dev, &base_size, &base_keep))
		return 1;
	if (attach(d->cow, 0, &cow_dev, &cow_size, &cow_keep)) {
		r = 1;
		goto out;
	}
	if (base_dev == cow_dev) {
		log_err("the base and the CoW store are the same device");
		r = 1;
		goto out;
	}
	if (base_size < COW_SECTOR) {
		log_err("%s: smaller than one sector", d->base);
		r = 1;
		goto out;
	}
	snprintf(params, sizeof(params), "%s %u:%u %u:%u %llu%s%s", d->name, major(base_dev),
		 minor(base_dev), major(cow_dev), minor(cow_dev),
		 (unsigned long long)d->chunk_sectors, d->features ? " " : "",
		 d->features ? d->features : "");
	if (dmdev_create(d->name, device_sectors(d->cow, base_size), "cow", params, d->read_only)) {
		log_err("%s: the kernel refused the table 'cow %s' (see dmesg)", d->name, params);
		r = 1;
		goto out;
	}
	if (!d->no_daemon && start_daemon(d->name, d->ignore_base_mtime, d->base_id)) {
		log_err("%s: cowd could not serve the device; removing it", d->name);
		dmdev_remove(d->name);
		r = 1;
		goto out;
	}
	r = 0;
out:
	/* The dm table holds the loop devices now; autoclear does the rest. */
	if (base_keep >= 0)
		close(base_keep);
	if (cow_keep >= 0)
		close(cow_keep);
	return r;
}

/*
 * A store that looks blank (zeros at the start) is about to be formatted,
 * by cowctl or by cowd: refuse if libblkid finds a filesystem, RAID or
 * partition table on it further in, unless --force.  1 if refused.
 */
static int refuse_foreign(const struct cowctl_args *a)
{
	char what[128];
	int r;

	if (a->force)
		return 0;
	r = foreign_signature(a->cow, what, sizeof(what));
	if (r < 0)
		log_err("%s: cannot look for signatures on it: %s", a->cow, strerror(-r));
	else if (r)
		log_err("%s holds a %s; it is not made a CoW store without --force (wipefs -a removes the signature)",
			a->cow, what);
	return r != 0;
}

/* --base-ro: the base must be read-only for everyone, root included. */
static int base_is_read_only(const char *path)
{
	struct stat st;
	int fd, ro = 0;

	if (stat(path, &st) < 0)
		return 0;
	if (S_ISREG(st.st_mode))
		return (st.st_mode & 0222) == 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (ioctl(fd, BLKROGET, &ro) < 0)
		ro = 0;
	close(fd);
	return ro;
}

static int cmd_create(const struct cowctl_args *a)
{
	struct device_spec d = { .name = a->name, .base = a->base, .cow = a->cow,
				 .chunk_sectors = a->chunk_bytes / COW_SECTOR,
				 .read_only = a->read_only,
				 .ignore_base_mtime = a->ignore_base_mtime,
				 .base_id = a->base_id, .no_daemon = a->no_daemon };
	char who[300];
	struct stat st;

	if (dmdev_exists(a->name)) {
		log_err("%s: a device-mapper device of that name exists", a->name);
		return 1;
	}
	if (a->base_ro && !base_is_read_only(a->base)) {
		log_err("--base-ro: %s is writable; make it read-only first (chmod a-w FILE, or blockdev --setro DEVICE)",
			a->base);
		return 1;
	}
	if (path_in_use(a->cow, who, sizeof(who))) {
		log_err("%s is in use by %s: two devices must never share a CoW store", a->cow, who);
		return 1;
	}
	if (load_module())
		return 1;
	if (stat(a->cow, &st) == 0) {
		struct cow_store_info info;
		char format[32] = "";
		int r = offline_inspect(a->cow, format, sizeof(format), &info);
		int unknown = r && !format[0];	/* blank, or cowd may find it so */

		if (unknown && refuse_foreign(a))
			return 1;
		/* A blank file or device is made in the format asked for. */
		if (unknown && a->format) {
			if (init_store(a->base, a->cow, d.chunk_sectors, a->format, a->base_id,
				       STORE_BLANK))
				return 1;
		/* An existing store decides the chunk size (qcow2: its clusters). */
		} else if (!r && !a->chunk_given && info.chunk_sectors) {
			d.chunk_sectors = info.chunk_sectors;
		}
	} else if (errno != ENOENT) {
		log_err("%s: %s", a->cow, strerror(errno));
		return 1;
	} else if (init_store(a->base, a->cow, d.chunk_sectors, a->format, a->base_id,
			      STORE_NEW)) {
		return 1;
	}
	if (make_device(&d))
		return 1;
	printf("/dev/mapper/%s\n", a->name);
	if (a->no_daemon)
		fprintf(stderr, "cowctl: %s: no daemon yet: the device goes live when "
			"'systemctl start cowd@%s' (or 'cowd %s') serves it\n", a->name, a->name,
			a->name);
	return 0;
}

/* Whether process @pid holds the control device of group @name open. */
static int serves_group(pid_t pid, const char *name)
{
	char dir[64], path[PATH_MAX], link[PATH_MAX], want[PATH_MAX];
	struct dirent *e;
	int found = 0;
	DIR *fds;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	snprintf(want, sizeof(want), "%s/%s", COW_CTL_DIR, name);
	fds = opendir(dir);
	if (!fds)
		return 0;
	while (!found && (e = readdir(fds))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		found = !strcmp(link, want);
	}
	closedir(fds);
	return found;
}

/*
 * The pid in the group's pidfile, if that process serves the group: a
 * stale or forged pidfile may name any process.  0 if there is none.
 */
static pid_t daemon_pid(const char *name)
{
	char pidfile[128];
	FILE *f;
	int pid = 0;

	snprintf(pidfile, sizeof(pidfile), RUN_DIR "/%s.pid", name);
	f = fopen(pidfile, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1 || pid <= 0)
		pid = 0;
	fclose(f);
	if (pid && !serves_group(pid, name)) {
		log_warn("%s: %s names pid %d, which is not the group's cowd; leaving it alone",
			 name, pidfile, pid);
		pid = 0;
	}
	return pid;
}

/*
 * The group's cowd as a pidfd, so that a pid recycled meanwhile is never
 * signalled (checked again once pinned); -1 if there is none.
 */
static int daemon_pidfd(const char *name, pid_t *pid)
{
	int pidfd;

	*pid = daemon_pid(name);
	if (!*pid)
		return -1;
	pidfd = (int)syscall(SYS_pidfd_open, *pid, 0);
	if (pidfd >= 0 && !serves_group(*pid, name)) {
		close(pidfd);
		pidfd = -1;
	}
	return pidfd;
}

/* Wait up to @ms for the process behind @pidfd to exit; 1 if it did. */
static int pidfd_wait_exit(int pidfd, int ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

static int cmd_remove(const struct cowctl_args *a)
{
	char path[128];
	pid_t pid = 0;
	int fd, pidfd;

	if (!dmdev_exists(a->name)) {
		log_err("%s: no such device", a->name);
		return 1;
	}
	/* Flush: the daemon commits every mapping before the table goes. */
	snprintf(path, sizeof(path), "/dev/mapper/%s", a->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) < 0)
			log_warn("%s: flush failed: %s", a->name, strerror(errno));
		close(fd);
	}
	pidfd = daemon_pidfd(a->name, &pid);
	if (dmdev_remove(a->name)) {
		log_err("%s: cannot remove the device (still open or mounted?)", a->name);
		if (pidfd >= 0)
			close(pidfd);
		return 1;
	}
	/* cowd sees its group go, commits and exits. */
	if (pidfd >= 0 && !pidfd_wait_exit(pidfd, 30000)) {
		log_warn("%s: cowd (pid %d) did not exit; stopping it", a->name, (int)pid);
		syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
	}
	if (pidfd >= 0)
		close(pidfd);
	return 0;
}

struct status_fields {
	unsigned long long mapped, pending, copying, commits, rejected, copy_errors, failed,
		commit_errors;
	char daemon[32];
	int full, failing;
};

static void parse_status(const char *params, struct status_fields *f)
{
	static const struct kv_field fields[] = {
		KV(KV_U64, struct status_fields, mapped, "mapped"),
		KV(KV_U64, struct status_fields, pending, "pending"),
		KV(KV_U64, struct status_fields, copying, "copying"),
		KV(KV_U64, struct status_fields, commits, "commits"),
		KV(KV_U64, struct status_fields, rejected, "rejected"),
		KV(KV_U64, struct status_fields, copy_errors, "copy_errors"),
		KV(KV_U64, struct status_fields, failed, "failed"),
		KV(KV_U64, struct status_fields, commit_errors, "commit_errors"),
		KV(KV_STR, struct status_fields, daemon, "daemon"),
		KV(KV_FLAG, struct status_fields, full, "full"),
		KV(KV_FLAG, struct status_fields, failing, "failing"),
	};

	memset(f, 0, sizeof(*f));
	kv_parse(params, fields, sizeof(fields) / sizeof(fields[0]), f);
}

/* What cowd publishes about its store and table in /run/dm-cow/IDENT.status. */
struct daemon_fields {
	char format[32];
	unsigned long long used, size, reloads, linear_segments, cow_segments, linear_chunks,
		tree_chunks;
	int capped, found, restart_needed;
	double last_suspend_ms, max_suspend_ms;
};

static void read_daemon_status(const char *ident, struct daemon_fields *f)
{
	static const struct kv_field fields[] = {
		KV(KV_STR, struct daemon_fields, format, "format"),
		KV(KV_U64, struct daemon_fields, used, "store_used_bytes"),
		KV(KV_U64, struct daemon_fields, size, "store_size_bytes"),
		KV(KV_U64, struct daemon_fields, reloads, "reloads"),
		KV(KV_U64, struct daemon_fields, linear_segments, "linear_segments"),
		KV(KV_U64, struct daemon_fields, cow_segments, "cow_segments"),
		KV(KV_U64, struct daemon_fields, linear_chunks, "linear_chunks"),
		KV(KV_U64, struct daemon_fields, tree_chunks, "tree_chunks"),
		KV(KV_INT, struct daemon_fields, capped, "capped"),
		KV(KV_INT, struct daemon_fields, restart_needed, "restart_needed"),
		KV(KV_DOUBLE, struct daemon_fields, last_suspend_ms, "last_suspend_ms"),
		KV(KV_DOUBLE, struct daemon_fields, max_suspend_ms, "max_suspend_ms"),
	};
	memset(f, 0, sizeof(*f));
	f->found = run_status_read(ident, fields, sizeof(fields) / sizeof(fields[0]), f);
}

/* What status says of a device, gathered from its table, status and cowd. */
struct device_state {
	char ident[80], base[32], cow[32];
	unsigned long long chunk;
	struct status_fields f;
	struct daemon_fields df;
	pid_t pid;
};

static int read_device_state(const char *name, struct device_state *d)
{
	char status[512], table[512];

	memset(d, 0, sizeof(*d));
	if (dmdev_target_params(name, 0, "cow", status, sizeof(status)) ||
	    dmdev_target_params(name, 1, "cow", table, sizeof(table))) {
		log_err("%s: no dm-cow device of that name", name);
		return -1;
	}
	if (sscanf(table, "%79s %31s %31s %llu", d->ident, d->base, d->cow, &d->chunk) != 4) {
		log_err("%s: cannot read its table", name);
		return -1;
	}
	parse_status(status, &d->f);
	read_daemon_status(d->ident, &d->df);
	d->pid = daemon_pid(d->ident);
	return 0;
}

/* status --json, and one element of list --json. */
static struct json_object *status_json(const char *name, const struct device_state *d)
{
	const struct status_fields *f = &d->f;
	const struct daemon_fields *df = &d->df;
	struct json_object *j = json_object_new_object();

	json_object_object_add(j, "name", json_object_new_string(name));
	json_object_object_add(j, "ident", json_object_new_string(d->ident));
	json_object_object_add(j, "base", json_object_new_string(d->base));
	json_object_object_add(j, "cow", json_object_new_string(d->cow));
	json_add_u64(j, "chunk_bytes", d->chunk * COW_SECTOR);
	json_add_u64(j, "chunks_mapped", f->mapped);
	json_add_u64(j, "pending_faults", f->pending);
	json_add_u64(j, "copies_in_flight", f->copying);
	json_add_u64(j, "commits", f->commits);
	json_object_object_add(j, "daemon", json_object_new_string(f->daemon));
	json_object_object_add(j, "daemon_pid", json_object_new_int(d->pid));
	json_add_u64(j, "rejected_messages", f->rejected);
	json_add_u64(j, "copy_errors", f->copy_errors);
	json_add_u64(j, "failed_faults", f->failed);
	json_object_object_add(j, "format", json_object_new_string(df->format));
	json_add_u64(j, "store_used_bytes", df->used);
	json_add_u64(j, "store_free_bytes", df->size > df->used ? df->size - df->used : 0);
	json_add_u64(j, "reloads", df->reloads);
	json_add_u64(j, "linear_segments", df->linear_segments);
	json_add_u64(j, "cow_segments", df->cow_segments);
	json_add_u64(j, "linear_chunks", df->linear_chunks);
	json_add_u64(j, "tree_chunks", df->tree_chunks);
	json_object_object_add(j, "segment_limit_reached", json_object_new_boolean(df->capped));
	json_object_object_add(j, "last_suspend_ms", json_object_new_double(df->last_suspend_ms));
	json_object_object_add(j, "full", json_object_new_boolean(f->full));
	json_object_object_add(j, "failing", json_object_new_boolean(f->failing));
	json_object_object_add(j, "restart_needed", json_object_new_boolean(df->restart_needed));
	json_add_u64(j, "commit_errors", f->commit_errors);
	return j;
}

static int cmd_status(const struct cowctl_args *a)
{
	struct device_state d;
	const struct daemon_fields *df = &d.df;
	const struct status_fields *f = &d.f;
	const char *ident = d.ident, *base = d.base, *cow = d.cow;
	unsigned long long chunk;
	pid_t pid;

	if (read_device_state(a->name, &d))
		return 1;
	chunk = d.chunk;
	pid = d.pid;
	if (a->json) {
		struct json_object *j = status_json(a->name, &d);

		json_out(j, JSON_OUTPUT_FLAGS);
		json_object_put(j);
		return 0;
	}
	printf("%s: dm-cow device /dev/mapper/%s (group %s)%s%s\n", a->name, a->name, ident,
	       f->full ? " -- FULL: first writes fail with ENOSPC" : "",
	       !f->failing ? "" :
	       df->restart_needed ? " -- FAILING: a write or sync of the CoW device failed; flushes "
				   "fail with EIO until cowd is restarted, once the device works "
				   "(see cowd's log)" :
	       " -- FAILING: the store cannot commit; flushes fail with EIO (see cowd's log)");
	printf("  base device:       %s (read only)\n", base);
	printf("  CoW device:        %s\n", cow);
	printf("  chunk size:        %llu KiB\n", chunk * COW_SECTOR / 1024);
	if (df->found)
		printf("  store:             %s, %llu KiB used, %llu KiB free%s\n", df->format,
		       df->used / 1024, df->size > df->used ? (df->size - df->used) / 1024 : 0,
		       !strcmp(df->format, "qcow2") ? " (the image grows when it is a file)" : "");
	printf("  chunks in the kernel's remap tree: %llu (%llu KiB)\n", f->mapped,
	       f->mapped * chunk / 2);
	if (df->found) {
		printf("  table:             %llu linear segments (%llu chunks), %llu cow segments\n",
		       df->linear_segments, df->linear_chunks, df->cow_segments);
		if (df->capped)
			printf("                     segment limit reached: %llu mapped chunks stay in the kernel's tree\n",
			       df->tree_chunks);
		printf("  reloads:           %llu (last suspended I/O for %.2f ms, longest %.2f ms)\n",
		       df->reloads, df->last_suspend_ms, df->max_suspend_ms);
	}
	printf("  pending faults:    %llu\n", f->pending);
	printf("  copies in flight:  %llu\n", f->copying);
	printf("  commits:           %llu\n", f->commits);
	if (pid)
		printf("  daemon:            %s (pid %d)\n", f->daemon, (int)pid);
	else
		printf("  daemon:            %s\n", f->daemon);
	printf("  rejected messages: %llu\n", f->rejected);
	if (f->copy_errors || f->failed || f->commit_errors)
		printf("  errors:            %llu failed copies, %llu refused faults, %llu failed commits\n",
		       f->copy_errors, f->failed, f->commit_errors);
	return 0;
}

/* A path for the device MAJ:MIN of a table: the file behind a loop device. */
static int device_path(unsigned int maj, unsigned int min, char *path, size_t len)
{
	char link[64];

	if (!loop_backing_file(maj, min, path, len))
		return 0;
	snprintf(link, sizeof(link), "/dev/block/%u:%u", maj, min);
	return realpath(link, path) ? 0 : -errno;
}

/* Throw away every change: the checkpoint restore of the UML design. */
static int cmd_reset(const struct cowctl_args *a)
{
	char table[512], ident[80], features[256] = "", base[PATH_MAX], cow[PATH_MAX];
	unsigned int bmaj, bmin, cmaj, cmin;
	unsigned long long chunk;
	struct cow_store_info info;
	struct daemon_fields df;
	char format[32];
	struct device_spec d;
	int n = 0, open_count, read_only;

	if (dmdev_target_params(a->name, 1, "cow", table, sizeof(table))) {
		log_err("%s: no dm-cow device of that name", a->name);
		return 1;
	}
	if (sscanf(table, "%79s %u:%u %u:%u %llu %n", ident, &bmaj, &bmin, &cmaj, &cmin, &chunk,
		   &n) != 6) {
		log_err("%s: cannot read its table", a->name);
		return 1;
	}
	snprintf(features, sizeof(features), "%s", table + n);
	open_count = dmdev_info(a->name, &read_only);
	if (open_count != 0) {
		log_err("%s: the device is in use (mounted or open %d times): unmount it first",
			a->name, open_count);
		return 1;
	}
	if (device_path(bmaj, bmin, base, sizeof(base)) ||
	    device_path(cmaj, cmin, cow, sizeof(cow))) {
		log_err("%s: cannot find the files behind its devices", a->name);
		return 1;
	}
	read_daemon_status(ident, &df);
	if (!df.found || !df.format[0]) {
		log_err("%s: its daemon has not said the store's format; is cowd running?", a->name);
		return 1;
	}
	/* The new store keeps the base's label. */
	if (offline_inspect(cow, format, sizeof(format), &info))
		info.base_id[0] = 0;
	if (cmd_remove(a))
		return 1;
	if (init_store(base, cow, chunk, df.format, info.base_id[0] ? info.base_id : NULL,
		       STORE_RESET)) {
		log_err("%s: the store could not be cleared; the device is not re-created", a->name);
		return 1;
	}
	d = (struct device_spec){ .name = a->name, .base = base, .cow = cow,
				  .chunk_sectors = chunk, .features = features[0] ? features : NULL,
				  .read_only = read_only };
	if (make_device(&d))
		return 1;
	printf("%s: every change discarded; /dev/mapper/%s shows the base again\n", a->name,
	       a->name);
	return 0;
}

static void print_name(const char *name, void *ctx)
{
	printf("%s\n", name);
}

/* list --json: the devices with what status --json says of each. */
static void add_status(const char *name, void *ctx)
{
	struct device_state d;

	if (!read_device_state(name, &d))
		json_object_array_add(ctx, status_json(name, &d));
}

static int cmd_list(const struct cowctl_args *a)
{
	struct json_object *all;
	int r;

	all = a->json ? json_object_new_array() : NULL;
	r = a->json ? dmdev_list("cow", add_status, all) : dmdev_list("cow", print_name, NULL);
	if (r)
		log_err("cannot list the device-mapper devices (is the dm-mod module loaded?)");
	else if (a->json)
		json_out(all, JSON_OUTPUT_FLAGS);
	json_object_put(all);
	return r ? 1 : 0;
}

int json_out_begun;

/*
 * With --json, a command that fails before its answer gives the error as
 * JSON on stdout too: {"error": first message, "errors": [all], "exit": N}.
 * (check's verdicts, exit 3 and 4, are its answer.)
 */
static int json_error(const struct cowctl_args *a, int status)
{
	struct json_object *j, *all;
	int i;

	if (!a->json || json_out_begun || !status || !log_error(0))
		return status;
	j = json_object_new_object();
	all = json_object_new_array();
	json_object_object_add(j, "error", json_object_new_string(log_error(0)));
	for (i = 0; log_error(i); i++)
		json_object_array_add(all, json_object_new_string(log_error(i)));
	json_object_object_add(j, "errors", all);
	json_object_object_add(j, "exit", json_object_new_int(status));
	json_out(j, JSON_OUTPUT_FLAGS);
	json_object_put(j);
	return status;
}

static int run_command(const struct cowctl_args *a)
{
	switch (a->cmd) {
	case CMD_HELP:
		usage(stdout);
		return 0;
	case CMD_CREATE:
		return cmd_create(a);
	case CMD_REMOVE:
		return cmd_remove(a);
	case CMD_STATUS:
		return cmd_status(a);
	case CMD_LIST:
		return cmd_list(a);
	case CMD_CHECK:
		return cmd_check(a);
	case CMD_DUMP:
		return cmd_dump(a);
	case CMD_INFO:
		return cmd_info(a);
	case CMD_MAP:
		return cmd_map(a);
	case CMD_MERGE:
		return cmd_merge(a);
	case CMD_RESET:
		return cmd_reset(a);
	case CMD_CONVERT:
		return cmd_convert(a);
	case CMD_RESIZE:
		return cmd_resize(a);
	}
	return 2;
}

int main(int argc, char **argv)
{
	struct cowctl_args a;

	log_init("cowctl", 0, 0);
	log_keep_errors();
	if (cowctl_parse(argc, argv, &a)) {
		int i;

		/* (parsing may have stopped before it) */
		for (i = 1; i < argc; i++)
			a.json |= !strcmp(argv[i], "--json");
		log_err("%s (see cowctl --help)", a.error);
		return json_error(&a, 2);
	}
	return json_error(&a, run_command(&a));
}
