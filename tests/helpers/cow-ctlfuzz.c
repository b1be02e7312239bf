// SPDX-License-Identifier: GPL-2.0-only
/*
 * A control-protocol fuzzer: the daemon end of a group, gone mad.
 *
 *   cow-ctlfuzz IDENT MESSAGES SEED
 *
 * Opens /dev/dm-cow/IDENT as a daemon would and writes batches of random
 * messages until it has written MESSAGES of them: most well-formed (the
 * right version, chunks in range, locations on the data grid, answers to
 * the FAULTs it read, COMMITTED up to what it was told), the rest anything
 * at all (type, flags, version, reserved, chunk, sector, seq, error).  It
 * reads what the kernel says, now and then into a bad buffer, and writes
 * now and then from one; every few hundred batches it closes the device
 * and opens it again, as a restarted daemon, sometimes attaching with a
 * wrong phase or not at all.
 *
 * It checks what a daemon can see: every read returns whole messages of
 * known types with the protocol's version, HELLO first after an open;
 * every write returns whole messages, no more than given; every error is
 * one the protocol documents.  Prints one line of counts; exit 1 on a
 * violation, 0 otherwise.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dm-cow-proto.h"

#define BATCH 64
#define RESTART_EVERY 300	/* batches */

static uint64_t rng;
static char ctl_path[128];
static void *bad;	/* a page the process may not touch */

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

struct state {
	int fd;
	int fresh;		/* opened, HELLO not read yet */
	uint64_t nr_chunks, chunk_sectors, cow_sectors, phase;
	uint64_t faults[256];	/* chunks faulted, to answer */
	unsigned int nfaults;
	uint64_t max_seq;	/* highest READY/COMMIT seq read */
	/* counts */
	uint64_t written, accepted, refused, reads, read_msgs, restarts, violations;
};

static void violation(struct state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void violation(struct state *st, const char *fmt, ...)
{
	va_list ap;

	if (st->violations++ < 10) {
		va_start(ap, fmt);
		fprintf(stderr, "cow-ctlfuzz: ");
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
}

static void msg_init(struct cow_msg *m, uint16_t type)
{
	memset(m, 0, sizeof(*m));
	m->version = COW_PROTO_VERSION;
	m->type = type;
}

static uint64_t location(const struct state *st)
{
	uint64_t slots = st->cow_sectors > st->phase ?
			 (st->cow_sectors - st->phase) / st->chunk_sectors : 0;

	return st->phase + below(slots + 2) * st->chunk_sectors;
}

static void well_formed(struct state *st, struct cow_msg *m)
{
	uint64_t chunk = below(st->nr_chunks);

	if (st->nfaults && below(8))
		chunk = st->faults[below(st->nfaults)];
	switch (below(11)) {
	case 0: case 1: case 2:
		msg_init(m, COW_MSG_MAP);
		m->chunk = chunk;
		m->sector = location(st);
		if (!below(8))
			m->flags = COW_MAP_DATA_VALID;
		break;
	case 3:
		msg_init(m, COW_MSG_FAIL);
		m->chunk = chunk;
		m->error = below(2) ? -EIO : -ENOSPC;
		break;
	case 4: case 5:
		msg_init(m, COW_MSG_COMMITTED);
		m->seq = below(8) ? st->max_seq - below(st->max_seq / 4 + 1) : below(st->max_seq + 2);
		break;
	case 6:
		msg_init(m, COW_MSG_COMMIT_FAILED);
		m->seq = below(st->max_seq + 2);
		m->error = -EIO;
		break;
	case 7:
		msg_init(m, COW_MSG_LOAD);
		m->chunk = chunk;
		m->sector = location(st);
		break;
	case 8:
		msg_init(m, COW_MSG_DROP);
		m->chunk = chunk;
		m->arg[0] = 1 + below(st->nr_chunks - chunk + 1);
		break;
	case 9:
		msg_init(m, COW_MSG_GRANT);
		m->sector = location(st);
		m->arg[0] = 1 + below(below(8) ? 64 : 5000);
		break;
	default:
		msg_init(m, COW_MSG_ATTACH);
		m->arg[0] = below(4) ? st->phase : below(st->chunk_sectors + 1);
		break;
	}
}

static void anything(struct cow_msg *m)
{
	uint64_t *w = (uint64_t *)m;
	size_t i;

	for (i = 0; i < sizeof(*m) / 8; i++)
		w[i] = rnd();
	/* Often near-valid: the right version, a known type. */
	if (below(2))
		m->version = COW_PROTO_VERSION;
	if (below(2))
		m->type = (uint16_t)(16 + below(8));
	if (below(2))
		m->reserved = 0;
}

static int known_errno(int e)
{
	switch (e) {
	case EINVAL: case EPROTO: case ERANGE: case ENOENT: case EEXIST: case EBUSY:
	case ENOMEM: case ENODEV: case EFAULT: case EINTR: case EAGAIN: case ENOSPC:
		return 1;
	default:
		return 0;
	}
}

static int open_ctl(struct state *st)
{
	st->fd = open(ctl_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (st->fd < 0) {
		violation(st, "cannot open %s: %s", ctl_path, strerror(errno));
		return -1;
	}
	st->fresh = 1;
	st->nfaults = 0;
	return 0;
}

static void take(struct state *st, const struct cow_msg *m)
{
	if (m->version != COW_PROTO_VERSION)
		violation(st, "read a message of version %u", m->version);
	if (st->fresh && m->type != COW_MSG_HELLO)
		violation(st, "first message after open is type %u, not HELLO", m->type);
	st->fresh = 0;
	switch (m->type) {
	case COW_MSG_HELLO:
		st->nr_chunks = m->chunk;
		st->chunk_sectors = m->arg[0];
		st->cow_sectors = m->arg[1];
		if (!st->nr_chunks || st->chunk_sectors < 8)
			violation(st, "HELLO with %llu chunks of %llu sectors",
				  (unsigned long long)m->chunk, (unsigned long long)m->arg[0]);
		break;
	case COW_MSG_FAULT:
		if (m->chunk >= st->nr_chunks)
			violation(st, "FAULT of chunk %llu of %llu", (unsigned long long)m->chunk,
				  (unsigned long long)st->nr_chunks);
		st->faults[st->nfaults++ % 256] = m->chunk;
		if (st->nfaults > 256)
			st->nfaults = 256;
		break;
	case COW_MSG_READY:
	case COW_MSG_COMMIT:
		if (m->seq > st->max_seq)
			st->max_seq = m->seq;
		break;
	case COW_MSG_COPY_FAILED:
		if (m->error >= 0)
			violation(st, "COPY_FAILED with error %d", m->error);
		break;
	case COW_MSG_FILLING:
		break;
	default:
		violation(st, "read a message of unknown type %u", m->type);
	}
}

static void read_some(struct state *st)
{
	struct cow_msg msgs[BATCH];
	ssize_t r;
	size_t i;

	if (!below(500)) {
		/* Into memory the process does not have: EFAULT, nothing lost. */
		r = read(st->fd, bad, sizeof(msgs));
		if (r >= 0 || (errno != EFAULT && errno != EAGAIN))
			violation(st, "read into a bad buffer: %zd (%s)", r, strerror(errno));
		return;
	}
	r = read(st->fd, msgs, sizeof(*msgs) * (1 + below(BATCH)));
	st->reads++;
	if (r < 0) {
		if (!known_errno(errno))
			violation(st, "read: %s", strerror(errno));
		return;
	}
	if (r % sizeof(*msgs))
		violation(st, "read returned %zd bytes, not whole messages", r);
	for (i = 0; i < (size_t)r / sizeof(*msgs); i++) {
		take(st, &msgs[i]);
		st->read_msgs++;
	}
}

static int write_batch(struct state *st)
{
	struct cow_msg msgs[BATCH];
	size_t n = 1 + below(BATCH), i = 0;

	for (i = 0; i < n; i++) {
		if (below(100) < 85)
			well_formed(st, &msgs[i]);
		else
			anything(&msgs[i]);
	}
	if (!below(500)) {
		ssize_t r = write(st->fd, bad, sizeof(*msgs));

		if (r >= 0 || errno != EFAULT)
			violation(st, "write from a bad buffer: %zd (%s)", r, strerror(errno));
	}
	i = 0;
	while (i < n) {
		ssize_t r = write(st->fd, msgs + i, (n - i) * sizeof(*msgs));

		if (r > 0) {
			if (r % sizeof(*msgs) || (size_t)r > (n - i) * sizeof(*msgs))
				violation(st, "write of %zu messages returned %zd bytes", n - i, r);
			st->written += (size_t)r / sizeof(*msgs);
			st->accepted += (size_t)r / sizeof(*msgs);
			i += (size_t)r / sizeof(*msgs);
			continue;
		}
		if (r == 0) {
			violation(st, "write returned 0");
			return -1;
		}
		if (errno == ENODEV) {
			violation(st, "the group went away");
			return -1;
		}
		if (!known_errno(errno))
			violation(st, "write refused with %s", strerror(errno));
		st->written++;
		st->refused++;
		i++;		/* the refused message: go on with the rest */
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct state st = { .fd = -1 };
	uint64_t target, batches = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: cow-ctlfuzz IDENT MESSAGES SEED\n");
		return 2;
	}
	snprintf(ctl_path, sizeof(ctl_path), "%s/%s", COW_CTL_DIR, argv[1]);
	target = strtoull(argv[2], NULL, 0);
	bad = mmap(NULL, 4096 * BATCH, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bad == MAP_FAILED)
		return 1;
	rng = strtoull(argv[3], NULL, 0) * 2654435761u + 1;
	if (open_ctl(&st))
		return 1;
	while (st.written < target && st.violations < 10) {
		if (batches && batches % RESTART_EVERY == 0) {
			close(st.fd);
			st.restarts++;
			if (open_ctl(&st))
				break;
		}
		/* HELLO first: the geometry is needed to be well-formed. */
		read_some(&st);
		if (!st.nr_chunks)
			continue;
		if (st.fresh)
			continue;
		if (write_batch(&st))
			break;
		batches++;
	}
	if (st.fd >= 0)
		close(st.fd);
	printf("%llu messages written (%llu accepted, %llu refused), %llu read in %llu reads, %llu restarts, %llu violations\n",
	       (unsigned long long)st.written, (unsigned long long)st.accepted,
	       (unsigned long long)st.refused, (unsigned long long)st.read_msgs,
	       (unsigned long long)st.reads, (unsigned long long)st.restarts,
	       (unsigned long long)st.violations);
	return st.violations ? 1 : 0;
}
