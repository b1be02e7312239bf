// SPDX-License-Identifier: GPL-2.0-only
/*
 * cowd: the dm-cow allocation daemon.  Serves one group (IDENT): answers the
 * kernel's faults through a store-format plugin and commits its metadata.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define COWD_VERSION "0.1"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cowd [options] IDENT\n"
		"\n"
		"Serve the dm-cow group IDENT (the <ident> of its cow table lines):\n"
		"answer first writes through the store's plugin and commit its metadata.\n"
		"The geometry and devices come from the kernel; the store format from\n"
		"its magic.  A blank store is created in the default format.\n"
		"\n"
		"  -f, --foreground         stay in the foreground, log to stderr\n"
		"      --syslog             log to syslog (default when in the background)\n"
		"      --log-file FILE      append the log to FILE instead\n"
		"      --pidfile FILE       write the daemon's pid to FILE\n"
		"      --format NAME        format for a blank store (default %s)\n"
		"      --plugin-dir DIR     load store plugins from DIR\n"
		"      --commit-interval S  commit at least every S seconds (default 1)\n"
		"      --reload-interval S  reload the table at most every S seconds when\n"
		"                           chunks were mapped (default 5; 0: only by count)\n"
		"      --reload-after N     reload after N new mappings (default 4096)\n"
		"      --max-segments N     linear segments in the table at most (default 10000)\n"
		"      --min-run N          runs shorter than N chunks stay in the kernel's\n"
		"                           remap tree (default 4)\n"
		"      --no-reload          never reload the table\n"
		"      --no-grants          never grant the kernel locations in advance:\n"
		"                           every first write asks cowd (FAULT)\n"
		"      --ignore-base-mtime  serve a UML COW file although its base file was\n"
		"                           modified after it was made (a copy that lost\n"
		"                           its mtime)\n"
		"      --base-id LABEL      the base's label: recorded in a store cowd makes\n"
		"                           (packed); a store that recorded another, or\n"
		"                           none, is refused\n"
		"      --root-storage       serve a root disk: lock memory and mark argv[0]\n"
		"                           with '@', so the shutdown killing spree of\n"
		"                           systemd spares the daemon (also when started\n"
		"                           as '@cowd')\n"
		"  -v, --verbose            log every decision\n"
		"  -V, --version            print the version\n"
		"  -h, --help               this text\n",
		COW_DEFAULT_FORMAT);
}

static void write_pidfile(const char *path, pid_t pid);

/*
 * Go to the background.  The parent writes the daemon's pidfile before it
 * exits: whoever started cowd finds the pidfile as soon as cowd returns.
 */
static int daemonize(const char *log_file, const char *pidfile)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -errno;
	if (pid > 0) {
		if (pidfile)
			write_pidfile(pidfile, pid);
		_exit(0);
	}
	setsid();
	if (chdir("/") < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (!log_file)
			dup2(fd, 2);
		close(fd);
	}
	return 0;
}

/* Make the directory of @path (e.g. /run/dm-cow) if it is missing. */
static void make_parent_dir(const char *path)
{
	char dir[4096], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir(dir, 0700);
	}
}

static void write_pidfile(const char *path, pid_t pid)
{
	FILE *f;

	make_parent_dir(path);
	f = fopen(path, "we");
	if (!f) {
		log_warn("cannot write the pidfile %s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "%d\n", (int)pid);
	fclose(f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "syslog", no_argument, NULL, 's' },
		{ "log-file", required_argument, NULL, 'l' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "format", required_argument, NULL, 'F' },
		{ "plugin-dir", required_argument, NULL, 'P' },
		{ "commit-interval", required_argument, NULL, 'c' },
		{ "reload-interval", required_argument, NULL, 'R' },
		{ "reload-after", required_argument, NULL, 'A' },
		{ "max-segments", required_argument, NULL, 'M' },
		{ "min-run", required_argument, NULL, 'm' },
		{ "no-reload", no_argument, NULL, 'N' },
		{ "no-grants", no_argument, NULL, 'G' },
		{ "ignore-base-mtime", no_argument, NULL, 'I' },
		{ "base-id", required_argument, NULL, 'B' },
		{ "root-storage", no_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cowd d = { .commit_interval = 1.0, .reload_interval = 5.0, .reload_after = 4096,
			  .max_segments = 10000, .min_run = 4, .ctl_fd = -1,
			  .image_lock_fd = -1 };
	unsigned long long n;
	const char *log_file = NULL, *pidfile = NULL;
	int foreground = 0, use_syslog = 0, verbose = 0, root_storage = 0, c, r;
	char *end;

	while ((c = getopt_long(argc, argv, "fvVh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': foreground = 1; break;
		case 's': use_syslog = 1; break;
		case 'l': log_file = optarg; break;
		case 'p': pidfile = optarg; break;
		case 'F': d.format = optarg; break;
		case 'P': d.plugin_dir = optarg; break;
		case 'c':
			d.commit_interval = strtod(optarg, &end);
			if (*end || d.commit_interval <= 0 || d.commit_interval > 3600) {
				fprintf(stderr, "cowd: --commit-interval wants seconds in (0, 3600]\n");
				return 2;
			}
			break;
		case 'R':
			d.reload_interval = strtod(optarg, &end);
			if (*end || d.reload_interval < 0 || d.reload_interval > 86400) {
				fprintf(stderr, "cowd: --reload-interval wants seconds in [0, 86400]\n");
				return 2;
			}
			break;
		case 'A':
		case 'M':
		case 'm':
			n = strtoull(optarg, &end, 10);
			if (*end || !n || *optarg == '-') {
				fprintf(stderr, "cowd: --%s wants a positive number\n",
					c == 'A' ? "reload-after" : c == 'M' ? "max-segments" : "min-run");
				return 2;
			}
			if (c == 'A')
				d.reload_after = n;
			else if (c == 'M')
				d.max_segments = (size_t)n;
			else
				d.min_run = n;
			break;
		case 'N': d.no_reload = 1; break;
		case 'G': d.grants_off = 1; break;
		case 'I': d.store.ignore_base_mtime = 1; break;
		case 'B':
			if (!*optarg || strlen(optarg) > COW_BASE_ID_MAX) {
				fprintf(stderr, "cowd: --base-id needs a label of 1 to %d bytes\n",
					COW_BASE_ID_MAX);
				return 2;
			}
			d.store.base_id = optarg;
			break;
		case 'r': root_storage = 1; break;
		case 'v': verbose = 1; break;
		case 'V': printf("cowd %s (protocol %u, plugin API %u)\n", COWD_VERSION,
				 COW_PROTO_VERSION, COW_PLUGIN_API_VERSION);
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	d.ident = argv[optind];
	/*
	 * A daemon that serves the root disk must outlive the switch from the
	 * initramfs and the final killing of processes at shutdown; systemd
	 * spares processes whose argv[0] starts with '@'.  It must not wait
	 * for memory that only writes to its own disk could free, either.
	 */
	if (argv[0][0] == '@')
		root_storage = 1;
	if (root_storage) {
		argv[0][0] = '@';
		if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
			fprintf(stderr, "cowd: cannot lock memory: %s\n", strerror(errno));
	}
	/* Start-up errors go to the caller's stderr, whatever comes later. */
	log_init("cowd", use_syslog, verbose);
	r = cowd_start(&d);
	if (r) {
		cowd_cleanup(&d);
		return 1;
	}
	if (!foreground && daemonize(log_file, pidfile)) {
		log_err("%s: cannot go to the background", d.ident);
		cowd_cleanup(&d);
		return 1;
	}
	if (log_file) {
		int fd;

		make_parent_dir(log_file);
		fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		} else {
			log_warn("%s: cannot open the log file %s: %s", d.ident, log_file,
				 strerror(errno));
		}
	}
	log_init("cowd", use_syslog || (!foreground && !log_file), verbose);
	if (pidfile && foreground)
		write_pidfile(pidfile, getpid());
	r = cowd_run(&d);
	log_info("%s: exiting after %llu commits", d.ident, (unsigned long long)d.nr_commits);
	cowd_cleanup(&d);
	if (pidfile)
		unlink(pidfile);
	return r;
}
