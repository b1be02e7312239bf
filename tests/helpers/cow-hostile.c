// SPDX-License-Identifier: GPL-2.0-only
/*
 * A malicious or broken daemon.
 *
 *   cow-hostile IDENT DEVICE
 *       attaches to the group IDENT (whose dm device is DEVICE, on a scratch
 *       store), sends every kind of malformed or out-of-range message and
 *       checks that each one is refused with the documented error, then
 *       serves one fault correctly to show the group still works
 *   cow-hostile drop-suspended IDENT DMNAME
 *       serves one first write to a chunk of the dm device DMNAME and
 *       commits it, suspends the device and sends a DROP for that chunk:
 *       the suspended table still serves it through a cow target, so the
 *       DROP must be refused (EBUSY), and after the resume the chunk must
 *       still read back the written data, not the base's
 *   cow-hostile flush-release IDENT DMNAME
 *       two first writes (chunks 1 and 2) each followed by an fsync from
 *       another process, neither committed: COMMITTED for chunk 1's READY
 *       must release the first flush, while the second one, which depends
 *       on chunk 2 too, waits until chunk 2 is committed
 *   cow-hostile efault IDENT DMNAME ERROR_SECTOR
 *       maps a first write to ERROR_SECTOR of the CoW device, where I/O
 *       fails, then reads the COPY_FAILED into an unmapped buffer (EFAULT):
 *       the message must come again on the next read
 *   cow-hostile spam IDENT
 *       attaches and writes batches of valid-looking messages (COMMITTED,
 *       LOAD of in-range chunks to their own aligned location, DROP of
 *       everything) as fast as it can, ignoring refusals, until the group
 *       goes away (write fails with ENODEV, read returns 0 or poll says
 *       EPOLLHUP); then exits 0.  For racing group teardown.
 *
 * Checks print one line each; exit 1 if any failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dm-cow-proto.h"

static int failures, checks;

/* Count and print one check; returns whether it passed. */
static int expect(const char *what, int got_errno, int want_errno)
{
	checks++;
	if (got_errno == want_errno) {
		printf("ok   %s: %s\n", what, want_errno ? strerror(want_errno) : "accepted");
		fflush(stdout);
		return 1;
	}
	failures++;
	printf("FAIL %s: got %s, want %s\n", what, got_errno ? strerror(got_errno) : "accepted",
	       want_errno ? strerror(want_errno) : "accepted");
	fflush(stdout);
	return 0;
}

/* Count and print one check of an outcome that is not an errno. */
static void check(const char *what, int ok)
{
	checks++;
	failures += !ok;
	printf("%s %s\n", ok ? "ok  " : "FAIL", what);
	fflush(stdout);
}

static struct cow_msg msg(uint16_t type)
{
	struct cow_msg m;

	memset(&m, 0, sizeof(m));
	m.version = COW_PROTO_VERSION;
	m.type = type;
	return m;
}

/* errno of writing @m (0 if accepted). */
static int send1(int fd, struct cow_msg m)
{
	return write(fd, &m, sizeof(m)) == (ssize_t)sizeof(m) ? 0 : errno;
}

/*
 * Read messages until one of @type arrives (others are dropped).  The limit
 * of 60 s only detects a hang: every message waited for is due at once.
 */
static int wait_msg(int fd, uint16_t type, struct cow_msg *out)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int tries;

	for (tries = 0; tries < 600; tries++) {
		if (poll(&p, 1, 100) > 0 && read(fd, out, sizeof(*out)) == (ssize_t)sizeof(*out) &&
		    out->type == type)
			return 0;
	}
	return -1;
}

static int hostile(const char *ident, const char *device)
{
	char path[256];
	struct cow_msg m, hello;
	uint64_t chunk_sectors, nr_chunks, cow_sectors;
	pid_t writer;
	int fd, fd2, status, i;

	snprintf(path, sizeof(path), "%s/%s", COW_CTL_DIR, ident);

	/* Without CAP_SYS_ADMIN the control device does not open. */
	if (fork() == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(100);
		_exit(open(path, O_RDWR) < 0 ? errno : 0);
	}
	wait(&status);
	expect("open as an unprivileged user", WEXITSTATUS(status), EACCES);
	if (fork() == 0) {
		struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct c[2];

		if (syscall(SYS_capget, &h, c))
			_exit(100);
		c[CAP_SYS_ADMIN / 32].effective &= ~(1U << (CAP_SYS_ADMIN % 32));
		c[CAP_SYS_ADMIN / 32].permitted &= ~(1U << (CAP_SYS_ADMIN % 32));
		if (syscall(SYS_capset, &h, c))
			_exit(100);
		_exit(open(path, O_RDWR) < 0 ? errno : 0);
	}
	wait(&status);
	expect("open as root without CAP_SYS_ADMIN", WEXITSTATUS(status), EPERM);

	fd = open(path, O_RDWR | O_NONBLOCK);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	fd2 = open(path, O_RDWR);
	expect("second opener while one daemon is attached", fd2 < 0 ? errno : 0, EBUSY);
	if (wait_msg(fd, COW_MSG_HELLO, &hello)) {
		printf("FAIL no HELLO\n");
		return 1;
	}
	chunk_sectors = hello.arg[0];
	nr_chunks = hello.chunk;
	cow_sectors = hello.arg[1];
	printf("geometry: %llu chunks of %llu sectors, CoW %llu sectors\n",
	       (unsigned long long)nr_chunks, (unsigned long long)chunk_sectors,
	       (unsigned long long)cow_sectors);

	m = msg(COW_MSG_LOAD);
	expect("LOAD before ATTACH", send1(fd, m), EPROTO);
	expect("write of a partial message", write(fd, &m, 10) < 0 ? errno : 0, EINVAL);
	m = msg(COW_MSG_ATTACH);
	m.version = COW_PROTO_VERSION + 7;
	expect("ATTACH with a wrong protocol version", send1(fd, m), EPROTO);
	m = msg(COW_MSG_ATTACH);
	m.arg[0] = chunk_sectors;
	expect("ATTACH with a phase beyond the chunk", send1(fd, m), EINVAL);
	m = msg(COW_MSG_ATTACH);
	m.reserved = 1;
	expect("reserved field set", send1(fd, m), EINVAL);
	expect("ATTACH", send1(fd, msg(COW_MSG_ATTACH)), 0);
	expect("second ATTACH", send1(fd, msg(COW_MSG_ATTACH)), EINVAL);
	m = msg(999);
	expect("unknown message type", send1(fd, m), EINVAL);
	expect("a kernel-only type (FAULT) from the daemon", send1(fd, msg(COW_MSG_FAULT)), EINVAL);

	m = msg(COW_MSG_MAP);
	m.chunk = 3;
	m.sector = 3 * chunk_sectors;
	expect("MAP of a chunk that was not asked for", send1(fd, m), ENOENT);
	m.chunk = nr_chunks;
	expect("MAP of a chunk beyond the device", send1(fd, m), ERANGE);
	/* Flags the protocol does not define are refused, whatever the message. */
	m = msg(COW_MSG_LOAD);
	m.chunk = 5;
	m.sector = 5 * chunk_sectors;
	m.flags = 0x80;
	expect("LOAD with an unknown flag (0x80)", send1(fd, m), EINVAL);
	m = msg(COW_MSG_COMMITTED);
	m.seq = 0;
	m.flags = 0x80;
	expect("COMMITTED with an unknown flag (0x80)", send1(fd, m), EINVAL);
	m = msg(COW_MSG_COMMITTED);
	m.seq = 1ULL << 40;
	expect("COMMITTED of chunks never READY", send1(fd, m), ERANGE);
	m = msg(COW_MSG_FAIL);
	m.chunk = 1;
	m.error = 5;
	expect("FAIL with a positive errno", send1(fd, m), EINVAL);
	m.error = -ENOSPC;
	expect("FAIL of a chunk that was not asked for", send1(fd, m), ENOENT);

	m = msg(COW_MSG_LOAD);
	m.chunk = 0;
	m.sector = cow_sectors;
	expect("LOAD to a location past the CoW device", send1(fd, m), ERANGE);
	m.sector = cow_sectors - chunk_sectors / 2;
	expect("LOAD to a location not aligned to the phase", send1(fd, m), EINVAL);
	m.sector = 0;
	expect("LOAD chunk 0 at CoW sector 0", send1(fd, m), 0);
	expect("LOAD chunk 0 again, same place", send1(fd, m), 0);
	m.sector = chunk_sectors;
	expect("LOAD chunk 0 again elsewhere", send1(fd, m), EEXIST);
	m.chunk = 1;
	m.sector = 0;
	expect("LOAD chunk 1 onto chunk 0's location", send1(fd, m), EEXIST);
	m = msg(COW_MSG_DROP);
	m.chunk = 0;
	m.arg[0] = 1;
	expect("DROP of a chunk a live cow target serves", send1(fd, m), EBUSY);
	m.arg[0] = nr_chunks + 1;
	expect("DROP beyond the device", send1(fd, m), ERANGE);
	m.arg[0] = 0;
	expect("DROP of nothing", send1(fd, m), ERANGE);

	/* A real fault: a write to chunk 2 waits for us. */
	writer = fork();
	if (writer == 0) {
		char buf[4096];
		int dev = open(device, O_WRONLY | O_DIRECT);
		void *p;

		if (dev < 0 || posix_memalign(&p, 4096, sizeof(buf)))
			_exit(2);
		memset(p, 0xab, sizeof(buf));
		_exit(pwrite(dev, p, sizeof(buf), (off_t)(2 * chunk_sectors * 512)) == sizeof(buf) &&
		      fsync(dev) == 0 ? 0 : 1);
	}
	if (wait_msg(fd, COW_MSG_FAULT, &m) || m.chunk != 2) {
		printf("FAIL no FAULT for chunk 2\n");
		failures++;
	} else {
		m = msg(COW_MSG_MAP);
		m.chunk = 2;
		m.sector = 0;
		expect("MAP onto another chunk's location", send1(fd, m), EEXIST);
		m.sector = cow_sectors;
		expect("MAP past the CoW device", send1(fd, m), ERANGE);
		m.sector = 2 * chunk_sectors;
		m.flags = 0x80;
		if (expect("MAP with an unknown flag (0x80)", send1(fd, m), EINVAL)) {
			m.flags = 0;
			expect("MAP to a free location", send1(fd, m), 0);
		} else {
			printf("     (that MAP was taken: it serves the fault)\n");
		}
		m.flags = 0;
		expect("MAP of the same chunk twice", send1(fd, m), ENOENT);
		if (wait_msg(fd, COW_MSG_READY, &m) || m.chunk != 2) {
			printf("FAIL no READY for chunk 2\n");
			failures++;
		}
		/* The writer's fsync waits for a commit. */
		if (wait_msg(fd, COW_MSG_COMMIT, &m)) {
			printf("FAIL no COMMIT for the writer's fsync\n");
			failures++;
		}
		m = msg(COW_MSG_COMMITTED);
		m.seq = 1;
		expect("COMMITTED", send1(fd, m), 0);
	}
	waitpid(writer, &status, 0);
	expect("the faulting write and its fsync complete",
	       WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : EIO, 0);

	/* Garbage: nothing may crash or be taken for a valid mapping. */
	srand(42);
	for (i = 0; i < 5000; i++) {
		unsigned char raw[sizeof(struct cow_msg)];
		size_t j;

		for (j = 0; j < sizeof(raw); j++)
			raw[j] = (unsigned char)rand();
		memcpy(&m, raw, sizeof(m));
		if (i % 2)
			m.version = COW_PROTO_VERSION;
		if (i % 4 == 1) {
			m.reserved = 0;
			m.type = (uint16_t)(COW_MSG_ATTACH + rand() % 6);
		}
		(void)!write(fd, &m, sizeof(m));
	}
	printf("sent 5000 random messages\n");
	close(fd);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
/* ---- shared by the subcommands ------------------------------------------- */

struct geometry {
	uint64_t chunk_sectors, nr_chunks, cow_sectors;
};

/* Open IDENT's control device, read HELLO and ATTACH with phase 0. */
static int open_attached(const char *ident, int flags, struct geometry *geo)
{
	char path[256];
	struct cow_msg hello;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", COW_CTL_DIR, ident);
	fd = open(path, O_RDWR | O_NONBLOCK | flags);
	if (fd < 0) {
		printf("FAIL open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (wait_msg(fd, COW_MSG_HELLO, &hello)) {
		printf("FAIL no HELLO\n");
		close(fd);
		return -1;
	}
	geo->chunk_sectors = hello.arg[0];
	geo->nr_chunks = hello.chunk;
	geo->cow_sectors = hello.arg[1];
	if (send1(fd, msg(COW_MSG_ATTACH))) {
		printf("FAIL ATTACH: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * 0 if @len bytes of the device at @off (read with O_DIRECT) equal @want;
 * else say what was read instead.
 */
static int read_equals(const char *dev, off_t off, const void *want, size_t len)
{
	int fd = open(dev, O_RDONLY | O_DIRECT), same = 0;
	unsigned char *p;

	if (fd < 0 || posix_memalign((void **)&p, 4096, len)) {
		perror(dev);
		return -1;
	}
	if (pread(fd, p, len, off) != (ssize_t)len)
		printf("     read of %zu bytes at %lld: %s\n", len, (long long)off, strerror(errno));
	else if (!(same = !memcmp(p, want, len)))
		printf("     read at %lld: %02x %02x %02x %02x %02x %02x %02x %02x... (%s)\n",
		       (long long)off, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
		       memcmp(p, "ttapwoc", 7) ? "not the data written" : "the base's pattern");
	free(p);
	close(fd);
	return same ? 0 : -1;
}

static int run(const char *cmd)
{
	int r = system(cmd);

	if (r) {
		printf("FAIL '%s' failed (status %d)\n", cmd, r);
		failures++;
	}
	return r;
}

/*
 * A child that writes @len bytes of @byte at @off of @dev with O_DIRECT and
 * exits 0 if the write worked, 1 if it failed (2: could not try).
 */
static pid_t fork_writer(const char *dev, off_t off, size_t len, int byte)
{
	pid_t pid = fork();
	void *data;
	int d;

	if (pid)
		return pid;
	d = open(dev, O_WRONLY | O_DIRECT);
	if (d < 0 || posix_memalign(&data, 4096, len))
		_exit(2);
	memset(data, byte, len);
	_exit(pwrite(d, data, len, off) == (ssize_t)len ? 0 : 1);
}

/*
 * Serve a first write of the whole of @chunk, every byte @byte, from a
 * child process: FAULT, MAP to the chunk's own location (phase 0), READY.
 * Returns the READY's seq, or 0 (said why) if something went wrong.
 */
static uint64_t serve_first_write(int fd, const struct geometry *geo, const char *dev,
				  uint64_t chunk, int byte)
{
	size_t len = geo->chunk_sectors * 512;
	struct cow_msg m;
	pid_t writer;
	int status;

	if (geo->nr_chunks <= chunk || geo->cow_sectors < (chunk + 1) * geo->chunk_sectors) {
		printf("FAIL the device is too small for chunk %llu\n", (unsigned long long)chunk);
		return 0;
	}
	writer = fork_writer(dev, (off_t)(chunk * len), len, byte);
	if (wait_msg(fd, COW_MSG_FAULT, &m) || m.chunk != chunk) {
		printf("FAIL no FAULT for chunk %llu\n", (unsigned long long)chunk);
		kill(writer, SIGKILL);
		return 0;
	}
	m = msg(COW_MSG_MAP);
	m.chunk = chunk;
	m.sector = chunk * geo->chunk_sectors;
	if (!expect("MAP of the faulting chunk", send1(fd, m), 0))
		return 0;
	if (wait_msg(fd, COW_MSG_READY, &m) || m.chunk != chunk) {
		printf("FAIL no READY for chunk %llu\n", (unsigned long long)chunk);
		return 0;
	}
	waitpid(writer, &status, 0);
	check("the first write completes", WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return m.seq;
}

/* ---- drop-suspended --------------------------------------------------------- */

static int drop_suspended(const char *ident, const char *dmname)
{
	struct geometry geo;
	struct cow_msg m;
	char dev[300], cmd[400];
	const uint64_t chunk = 3;
	uint64_t seq;
	size_t len;
	off_t off;
	void *data;
	int fd;

	snprintf(dev, sizeof(dev), "/dev/mapper/%s", dmname);
	fd = open_attached(ident, 0, &geo);
	if (fd < 0)
		return 1;
	seq = serve_first_write(fd, &geo, dev, chunk, 0xc5);
	if (!seq)
		return 1;
	m = msg(COW_MSG_COMMITTED);
	m.seq = seq;
	expect("COMMITTED for the chunk's READY", send1(fd, m), 0);
	len = geo.chunk_sectors * 512;
	off = (off_t)(chunk * len);
	if (posix_memalign(&data, 4096, len))
		return 2;
	memset(data, 0xc5, len);
	check("the written chunk reads back", !read_equals(dev, off, data, len));

	snprintf(cmd, sizeof(cmd), "dmsetup suspend %s", dmname);
	if (run(cmd))
		return 1;
	m = msg(COW_MSG_DROP);
	m.chunk = chunk;
	m.arg[0] = 1;
	expect("DROP of a chunk the suspended table serves through a cow target",
	       send1(fd, m), EBUSY);
	snprintf(cmd, sizeof(cmd), "dmsetup resume %s", dmname);
	if (run(cmd))
		return 1;
	check("after the resume the chunk still reads back the written data",
	      !read_equals(dev, off, data, len));
	expect("DROP of a chunk the live table serves through a cow target",
	       send1(fd, m), EBUSY);
	close(fd);
	free(data);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}

/* ---- efault ------------------------------------------------------------------ */

/*
 * A read into a bad buffer loses nothing: the daemon maps a first write of
 * chunk 2 to @err_sector, where the CoW device fails I/O, reads the
 * COPY_FAILED into an unmapped address (EFAULT) and must get it again.
 */
static int efault(const char *ident, const char *dmname, uint64_t err_sector)
{
	struct pollfd p;
	struct geometry geo;
	struct cow_msg m;
	char dev[300];
	const uint64_t chunk = 2;
	pid_t writer;
	int fd, status;
	void *bad;

	snprintf(dev, sizeof(dev), "/dev/mapper/%s", dmname);
	fd = open_attached(ident, 0, &geo);
	if (fd < 0)
		return 1;
	writer = fork_writer(dev, (off_t)(chunk * geo.chunk_sectors * 512), 4096, 0xef);
	if (wait_msg(fd, COW_MSG_FAULT, &m) || m.chunk != chunk) {
		printf("FAIL no FAULT for chunk %llu\n", (unsigned long long)chunk);
		kill(writer, SIGKILL);
		return 1;
	}
	m = msg(COW_MSG_MAP);
	m.chunk = chunk;
	m.sector = err_sector;
	expect("MAP of the chunk to a location that fails I/O", send1(fd, m), 0);
	waitpid(writer, &status, 0);
	check("the write whose copy failed fails", WIFEXITED(status) && WEXITSTATUS(status) == 1);
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	check("the COPY_FAILED is due", poll(&p, 1, 60000) == 1);
	bad = mmap(NULL, 64 * sizeof(m), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bad == MAP_FAILED)
		return 2;
	expect("read into a buffer the daemon may not write",
	       read(fd, bad, 64 * sizeof(m)) < 0 ? errno : 0, EFAULT);
	munmap(bad, 64 * sizeof(m));
	check("the COPY_FAILED comes again after the failed read",
	      !wait_msg(fd, COW_MSG_COPY_FAILED, &m) && m.chunk == chunk && m.sector == err_sector);
	close(fd);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}

/* ---- flush-release ----------------------------------------------------------- */

/* A child that fsync()s the device: one empty flush bio. */
static pid_t child_fsync(const char *dev)
{
	pid_t pid = fork();

	if (pid == 0) {
		int d = open(dev, O_WRONLY);

		_exit(d >= 0 && fsync(d) == 0 ? 0 : 1);
	}
	return pid;
}

/* Read until a COMMIT covering @seq arrives: a flush is parked. */
static int wait_commit(int fd, uint64_t seq)
{
	struct cow_msg m;

	while (!wait_msg(fd, COW_MSG_COMMIT, &m))
		if (m.seq >= seq)
			return 0;
	printf("FAIL no COMMIT covering READY %llu\n", (unsigned long long)seq);
	return -1;
}

/* Still running?  (Does not reap it.) */
static int running(pid_t pid)
{
	siginfo_t info;

	memset(&info, 0, sizeof(info));
	return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && !info.si_pid;
}

/*
 * Wait for @pid to exit successfully.  The limit of 60 s only detects a
 * hang: the child can finish at once.
 */
static int exited_ok(pid_t pid)
{
	int tries, status;

	for (tries = 0; tries < 600; tries++) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (r < 0)
			return 0;
		poll(NULL, 0, 100);
	}
	printf("     (still waiting after 60 s)\n");
	return 0;
}

static int flush_release(const char *ident, const char *dmname)
{
	struct geometry geo;
	struct cow_msg m;
	uint64_t seq1, seq2;
	pid_t first, second;
	char dev[300];
	int fd, first_done;

	snprintf(dev, sizeof(dev), "/dev/mapper/%s", dmname);
	fd = open_attached(ident, 0, &geo);
	if (fd < 0)
		return 1;
	/* A first flush depends on chunk 1 ... */
	seq1 = serve_first_write(fd, &geo, dev, 1, 0xa1);
	if (!seq1)
		return 1;
	first = child_fsync(dev);
	if (wait_commit(fd, seq1))
		return 1;
	/* ... a second one, parked after it, on chunks 1 and 2. */
	seq2 = serve_first_write(fd, &geo, dev, 2, 0xa2);
	if (!seq2)
		return 1;
	check("chunk 2 became READY after chunk 1", seq2 > seq1);
	second = child_fsync(dev);
	if (wait_commit(fd, seq2))
		return 1;
	check("both flushes wait for a commit", running(first) && running(second));

	m = msg(COW_MSG_COMMITTED);
	m.seq = seq1;
	expect("COMMITTED of chunk 1's READY", send1(fd, m), 0);
	first_done = exited_ok(first);
	check("the first flush completes once what it depends on is committed, while a later flush waits for more",
	      first_done);
	check("the second flush still waits: chunk 2 is not committed", running(second));

	m.seq = seq2;
	expect("COMMITTED of chunk 2's READY", send1(fd, m), 0);
	check("the second flush completes once chunk 2 is committed", exited_ok(second));
	if (!first_done)
		check("the first flush completes at last", exited_ok(first));
	close(fd);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}

/* ---- spam ------------------------------------------------------------------ */

#define SPAM_BATCH 64

static int spam(const char *ident)
{
	struct cow_msg batch[SPAM_BATCH], in[SPAM_BATCH], drop;
	struct geometry geo;
	unsigned long long accepted = 0, refused = 0, writes = 0;
	uint64_t next = 0, usable;
	const char *why = "?";
	int fd, i;

	fd = open_attached(ident, 0, &geo);
	if (fd < 0)
		return 1;
	/* Chunks whose own location (phase 0) lies inside the CoW device. */
	usable = geo.cow_sectors / geo.chunk_sectors;
	if (usable > geo.nr_chunks)
		usable = geo.nr_chunks;
	if (!usable) {
		printf("FAIL no chunk fits the CoW device\n");
		return 1;
	}
	drop = msg(COW_MSG_DROP);
	drop.chunk = 0;
	drop.arg[0] = geo.nr_chunks;
	printf("spam: attached, %llu chunks\n", (unsigned long long)geo.nr_chunks);
	fflush(stdout);

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t w;

		/*
		 * The DROP is refused while a live cow target covers the
		 * chunks, and taken once the table is suspended for its
		 * removal: then every LOAD below looks at the CoW device again.
		 */
		w = write(fd, &drop, sizeof(drop));
		writes++;
		if (w < 0 && errno == ENODEV) {
			why = "write: ENODEV";
			break;
		}
		if (w < 0)
			refused++;
		else
			accepted++;

		batch[0] = msg(COW_MSG_COMMITTED);
		for (i = 1; i < SPAM_BATCH; i++) {
			batch[i] = msg(COW_MSG_LOAD);
			batch[i].chunk = next;
			batch[i].sector = next * geo.chunk_sectors;
			next = (next + 1) % usable;
		}
		w = write(fd, batch, sizeof(batch));
		writes++;
		if (w < 0 && errno == ENODEV) {
			why = "write: ENODEV";
			break;
		}
		if (w < 0)
			refused++;
		else
			accepted += (unsigned long long)w / sizeof(batch[0]);

		/* Drain what the kernel says; notice the group going away. */
		if (poll(&p, 1, 0) > 0) {
			if (p.revents & (POLLHUP | POLLERR)) {
				why = "poll: EPOLLHUP";
				break;
			}
			w = read(fd, in, sizeof(in));
			if (w == 0) {
				why = "read: end of file";
				break;
			}
		}
	}
	printf("spam: %llu messages accepted, %llu writes refused, %llu writes; stopped by %s\n",
	       accepted, refused, writes, why);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "drop-suspended"))
		return drop_suspended(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "flush-release"))
		return flush_release(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "spam"))
		return spam(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "efault"))
		return efault(argv[2], argv[3], strtoull(argv[4], NULL, 0));
	if (argc == 3)
		return hostile(argv[1], argv[2]);
	fprintf(stderr, "usage: cow-hostile IDENT DEVICE\n"
		"       cow-hostile drop-suspended IDENT DMNAME\n"
		"       cow-hostile flush-release IDENT DMNAME\n"
		"       cow-hostile spam IDENT\n"
		"       cow-hostile efault IDENT DMNAME ERROR_SECTOR\n");
	return 2;
}
