// SPDX-License-Identifier: GPL-2.0-only
/*
 * log-replay: replay a dm-log-writes log onto an image, up to a point.
 *
 * dm-log-writes records every write that reached a device, in the order
 * the device made it durable: completed writes are logged when the flush
 * that covers them completes, FUA writes at once, and userspace marks in
 * between.  Replaying a prefix of the log therefore gives a state a power
 * cut could have left.  The log format (drivers/md/dm-log-writes.c): a
 * super block, then for each entry one block with the entry header (and a
 * mark's text), followed by the entry's data.
 *
 *   log-replay list LOG
 *       one line per entry: INDEX FLAGS [MARK]; FLAGS from F(lush) U(fua)
 *       D(iscard) M(ark), or - for a plain write
 *   log-replay replay LOG IMAGE FROM TO
 *       apply entries FROM..TO-1 (0-based) to IMAGE; discards write zeros
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MAGIC 0x6a736677736872ULL
#define LOG_FLUSH (1 << 0)
#define LOG_FUA (1 << 1)
#define LOG_DISCARD (1 << 2)
#define LOG_MARK (1 << 3)

struct log_super {
	uint64_t magic, version, nr_entries;
	uint32_t sectorsize;
} __attribute__((packed));

struct log_entry {
	uint64_t sector, nr_sectors, flags, data_len;
};

struct log {
	int fd;
	uint64_t nr_entries;
	uint32_t bs;
	uint64_t pos;		/* byte offset of the next entry header */
	uint64_t index;		/* index of the next entry */
	char *block;
};

static int log_open(struct log *l, const char *path)
{
	struct log_super super;

	l->fd = open(path, O_RDONLY);
	if (l->fd < 0 || pread(l->fd, &super, sizeof(super), 0) != sizeof(super)) {
		perror(path);
		return -1;
	}
	if (super.magic != LOG_MAGIC || super.version != 1 || super.sectorsize < 512 ||
	    super.sectorsize > 65536 || (super.sectorsize & (super.sectorsize - 1))) {
		fprintf(stderr, "log-replay: %s is not a dm-log-writes log\n", path);
		return -1;
	}
	l->nr_entries = super.nr_entries;
	l->bs = super.sectorsize;
	l->pos = l->bs;
	l->index = 0;
	l->block = malloc(l->bs);
	return l->block ? 0 : -1;
}

/* Read the next entry's header block; its data follows at l->pos. */
static int log_next(struct log *l, struct log_entry *e, char *mark, size_t mark_len)
{
	if (l->index >= l->nr_entries)
		return 0;
	if (pread(l->fd, l->block, l->bs, (off_t)l->pos) != (ssize_t)l->bs) {
		fprintf(stderr, "log-replay: entry %" PRIu64 " cut short\n", l->index);
		return -1;
	}
	memcpy(e, l->block, sizeof(*e));
	mark[0] = 0;
	if (e->flags & LOG_MARK) {
		size_t n = e->data_len < mark_len - 1 ? e->data_len : mark_len - 1;

		if (n > l->bs - sizeof(*e))
			n = l->bs - sizeof(*e);
		memcpy(mark, l->block + sizeof(*e), n);
		mark[n] = 0;
	}
	l->pos += l->bs;
	return 1;
}

/* Skip past (or hand back) the entry's data. */
static uint64_t entry_data_bytes(const struct log *l, const struct log_entry *e)
{
	if (e->flags & (LOG_DISCARD | LOG_MARK))
		return 0;
	return e->nr_sectors * l->bs;
}

static int cmd_list(const char *path)
{
	struct log l;
	struct log_entry e;
	char mark[512];
	int r;

	if (log_open(&l, path))
		return 2;
	while ((r = log_next(&l, &e, mark, sizeof(mark))) > 0) {
		char flags[8];
		int n = 0;

		if (e.flags & LOG_FLUSH)
			flags[n++] = 'F';
		if (e.flags & LOG_FUA)
			flags[n++] = 'U';
		if (e.flags & LOG_DISCARD)
			flags[n++] = 'D';
		if (e.flags & LOG_MARK)
			flags[n++] = 'M';
		if (!n)
			flags[n++] = '-';
		flags[n] = 0;
		printf("%" PRIu64 " %s%s%s\n", l.index, flags, mark[0] ? " " : "", mark);
		l.pos += entry_data_bytes(&l, &e);
		l.index++;
	}
	return r < 0 ? 1 : 0;
}

static int cmd_replay(const char *path, const char *image, uint64_t from, uint64_t to)
{
	struct log l;
	struct log_entry e;
	char mark[8], *buf = NULL;
	size_t cap = 0;
	int fd, r = 0;

	if (log_open(&l, path))
		return 2;
	fd = open(image, O_WRONLY);
	if (fd < 0) {
		perror(image);
		return 2;
	}
	if (to > l.nr_entries) {
		fprintf(stderr, "log-replay: the log has only %" PRIu64 " entries\n", l.nr_entries);
		return 2;
	}
	while (l.index < to && (r = log_next(&l, &e, mark, sizeof(mark))) > 0) {
		uint64_t len = (e.flags & LOG_DISCARD) ? e.nr_sectors * l.bs : entry_data_bytes(&l, &e);

		if (l.index >= from && len) {
			if (len > cap) {
				free(buf);
				cap = len;
				buf = malloc(cap);
				if (!buf)
					return 2;
			}
			if (e.flags & LOG_DISCARD)
				memset(buf, 0, len);
			else if (pread(l.fd, buf, len, (off_t)l.pos) != (ssize_t)len) {
				fprintf(stderr, "log-replay: data of entry %" PRIu64 " cut short\n",
					l.index);
				return 1;
			}
			if (pwrite(fd, buf, len, (off_t)(e.sector * l.bs)) != (ssize_t)len) {
				fprintf(stderr, "log-replay: writing %s: %s\n", image,
					strerror(errno));
				return 1;
			}
		}
		l.pos += entry_data_bytes(&l, &e);
		l.index++;
	}
	if (r < 0)
		return 1;
	free(buf);
	free(l.block);
	close(l.fd);
	if (fsync(fd) || close(fd)) {
		perror(image);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "list"))
		return cmd_list(argv[2]);
	if (argc == 6 && !strcmp(argv[1], "replay"))
		return cmd_replay(argv[2], argv[3], strtoull(argv[4], NULL, 0),
				  strtoull(argv[5], NULL, 0));
	fprintf(stderr, "usage: log-replay list LOG | log-replay replay LOG IMAGE FROM TO\n");
	return 2;
}
