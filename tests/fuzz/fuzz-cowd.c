// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness for cowd's handling of kernel messages, over one plugin
 * (linked in: one binary per plugin).  The input is a stream of struct
 * cow_msg, fed to cowd's handle_batch() eight at a time, as the kernel would
 * hand them to read(); the answers cowd writes to the "control device" (a
 * memfd) are read back.  Each run starts from the same fresh store.
 *
 * Crashes and sanitizer reports are findings; so is an answer the kernel
 * would have to refuse or, worse, accept wrongly: a MAP outside the store
 * or off its data phase, or a new location already held by another chunk
 * (one the input named in a FILLING or READY, or an earlier MAP gave).
 *
 * Most messages are steered into the geometry (chunk modulo the chunk
 * count, sectors onto the chunk grid, a RESIZE to at most five times the
 * base) so that runs go deep; a message with
 * bit 31 of its flags set is sent as the fuzzer made it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../daemon/server.c"

const struct cow_plugin *cow_plugin_init(void);

#define BASE_BYTES (256 << 10)
#define COW_BYTES (8 << 20)
#define CHUNK_SECTORS 8
#define NR_CHUNKS (BASE_BYTES / (CHUNK_SECTORS * COW_SECTOR))
#define BATCH 8
#define RAW_FLAG 0x80000000U

static const struct cow_plugin *P;
static int base_fd = -1, template_fd = -1;
static char status_dir[] = "/tmp/fuzz-cowd.XXXXXX";

/* A blank store formatted once; every run starts from a copy. */
static void setup_once(void)
{
	struct cow_store s = { 0 };

	P = cow_plugin_init();
	log_init("fuzz-cowd", 1, 0);	/* to syslog, which may be nowhere */
	if (!mkdtemp(status_dir))
		abort();
	base_fd = memfd_create("base", MFD_CLOEXEC);
	template_fd = memfd_create("template", MFD_CLOEXEC);
	if (base_fd < 0 || template_fd < 0 || ftruncate(base_fd, BASE_BYTES) ||
	    ftruncate(template_fd, COW_BYTES))
		abort();
	s.base_fd = base_fd;
	s.cow_fd = template_fd;
	s.base_size = BASE_BYTES;
	s.cow_size = COW_BYTES;
	s.chunk_sectors = CHUNK_SECTORS;
	s.base_name = "base.img";
	if (P->create(&s)) {
		fprintf(stderr, "fuzz-cowd: create: %s\n", s.error);
		abort();
	}
}

static int copy_of_template(void)
{
	static char buf[64 << 10];
	int fd = memfd_create("cow", MFD_CLOEXEC);
	uint64_t off;

	if (fd < 0 || ftruncate(fd, COW_BYTES))
		abort();
	for (off = 0; off < COW_BYTES; off += sizeof(buf)) {
		if (pread_full(template_fd, buf, sizeof(buf), off))
			abort();
		if (!buf_is_zero(buf, sizeof(buf)) && pwrite_full(fd, buf, sizeof(buf), off))
			abort();
	}
	return fd;
}

/* Which chunk holds CoW location @sector, as far as cowd was told. */
struct holder {
	uint64_t sector, chunk;
};

struct oracle {
	struct holder h[4096];
	size_t n;
	off_t answers;	/* answers read so far */
	int faulted;	/* a FAULT came: the replay is over */
};

static int64_t holder_of(const struct oracle *o, uint64_t sector)
{
	size_t i;

	for (i = 0; i < o->n; i++)
		if (o->h[i].sector == sector)
			return (int64_t)o->h[i].chunk;
	return -1;
}

static void hold(struct oracle *o, uint64_t sector, uint64_t chunk)
{
	if (holder_of(o, sector) < 0 && o->n < sizeof(o->h) / sizeof(o->h[0]))
		o->h[o->n++] = (struct holder){ sector, chunk };
}

static void check_answers(struct cowd *d, struct oracle *o)
{
	struct cow_msg m;

	while (pread(d->ctl_fd, &m, sizeof(m), o->answers) == (ssize_t)sizeof(m)) {
		int64_t who;

		o->answers += sizeof(m);
		if (m.type == COW_MSG_RESIZED && !m.error &&
		    (d->store.dev_size ? d->store.dev_size : d->store.base_size) < m.sector * COW_SECTOR) {
			fprintf(stderr, "RESIZED to %llu sectors, but the store holds %llu bytes\n",
				(unsigned long long)m.sector, (unsigned long long)d->store.dev_size);
			abort();
		}
		if (m.type != COW_MSG_MAP || (m.flags & COW_MAP_DATA_VALID))
			continue;
		if (m.sector < d->phase || (m.sector - d->phase) % CHUNK_SECTORS ||
		    (m.sector + CHUNK_SECTORS) * COW_SECTOR > d->store.cow_size) {
			fprintf(stderr, "MAP of chunk %llu at sector %llu: off the data grid or past the store\n",
				(unsigned long long)m.chunk, (unsigned long long)m.sector);
			abort();
		}
		who = holder_of(o, m.sector);
		if (who >= 0 && (uint64_t)who != m.chunk) {
			fprintf(stderr, "MAP of chunk %llu at sector %llu, which chunk %lld holds\n",
				(unsigned long long)m.chunk, (unsigned long long)m.sector,
				(long long)who);
			abort();
		}
		hold(o, m.sector, m.chunk);
	}
}

/*
 * The kernel's replay (FILLING, replayed READY) comes before any FAULT; a
 * location it names is then held by its chunk, if cowd could take it in
 * (a plugin without hold() has fixed locations, which the kernel would
 * never have filled for another chunk; a READY mark() refused names no
 * place the plugin gives out).  Such messages after a FAULT cannot come
 * from the kernel: the oracle ignores them.
 */
static void learn_replay(const struct cowd *d, struct oracle *o, const struct cow_msg *b,
			 size_t n)
{
	size_t i, j;

	for (i = 0; i < n && !o->faulted; i++) {
		int taken = 1;

		if (b[i].type == COW_MSG_FAULT) {
			o->faulted = 1;
			break;
		}
		if (b[i].version != COW_PROTO_VERSION || b[i].chunk >= NR_CHUNKS)
			continue;
		if (b[i].type == COW_MSG_FILLING) {
			taken = COW_PLUGIN_HAS(d->plugin, hold);
		} else if (b[i].type == COW_MSG_READY) {
			for (j = 0; j < d->nunrecorded; j++)
				if (d->unrecorded[j].chunk == b[i].chunk)
					taken = 0;
		} else {
			continue;
		}
		if (taken)
			hold(o, b[i].sector, b[i].chunk);
	}
}

/* Steer a message into the geometry unless it asks to go raw. */
static void steer(struct cow_msg *m, uint64_t phase)
{
	static const uint16_t types[] = { COW_MSG_FAULT, COW_MSG_READY, COW_MSG_COMMIT,
					  COW_MSG_COPY_FAILED, COW_MSG_FILLING, COW_MSG_RESIZE };

	if (m->flags & RAW_FLAG) {
		m->flags &= ~RAW_FLAG;
		return;
	}
	m->version = COW_PROTO_VERSION;
	m->type = types[m->type % (sizeof(types) / sizeof(types[0]))];
	m->flags &= COW_READY_REPLAY | COW_READY_GRANTED | COW_COPY_BASE_ERROR;
	if (m->type == COW_MSG_RESIZE) {
		/* Up to four times the base: the store grows, or refuses to. */
		m->sector = BASE_BYTES / COW_SECTOR + m->sector % (4 * BASE_BYTES / COW_SECTOR);
		m->chunk = (m->sector + CHUNK_SECTORS - 1) / CHUNK_SECTORS;
		return;
	}
	m->chunk %= NR_CHUNKS;
	m->sector = phase + m->sector % (COW_BYTES / COW_SECTOR / CHUNK_SECTORS) * CHUNK_SECTORS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct oracle o;
	struct cow_msg batch[BATCH];
	struct cowd d;
	size_t n = len / sizeof(struct cow_msg), i, k;
	int r = 0;

	if (!P)
		setup_once();
	memset(&d, 0, sizeof(d));
	memset(&o, 0, sizeof(o));
	d.ident = "fuzz";
	d.no_reload = 1;
	d.reload_after = UINT64_MAX;
	d.space.fd = -1;
	d.plugin = P;
	snprintf(d.status_path, sizeof(d.status_path), "%s/status", status_dir);
	d.geo.nr_chunks = NR_CHUNKS;
	d.geo.base_sectors = BASE_BYTES / COW_SECTOR;
	d.geo.chunk_sectors = CHUNK_SECTORS;
	d.geo.cow_sectors = COW_BYTES / COW_SECTOR;
	d.store.base_fd = base_fd;
	d.store.cow_fd = copy_of_template();
	d.store.base_size = BASE_BYTES;
	d.store.cow_size = COW_BYTES;
	d.store.chunk_sectors = CHUNK_SECTORS;
	d.store.base_name = "base.img";
	d.ctl_fd = memfd_create("ctl", MFD_CLOEXEC);
	if (d.ctl_fd < 0 || P->open(&d.store)) {
		fprintf(stderr, "fuzz-cowd: open: %s\n", d.store.error);
		abort();
	}
	d.phase = P->data_phase(&d.store) % CHUNK_SECTORS;

	for (i = 0; i < n && !r; i += k) {
		for (k = 0; k < BATCH && i + k < n; k++) {
			memcpy(&batch[k], data + (i + k) * sizeof(struct cow_msg), sizeof(batch[k]));
			steer(&batch[k], d.phase);
		}
		r = handle_batch(&d, batch, k);
		learn_replay(&d, &o, batch, k);
		check_answers(&d, &o);
	}

	P->close(&d.store);
	close(d.store.cow_fd);
	close(d.ctl_fd);
	free(d.out);
	free(d.unrecorded);
	free(d.replayed_ready);
	return 0;
}
