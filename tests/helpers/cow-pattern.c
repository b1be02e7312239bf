// SPDX-License-Identifier: GPL-2.0-only
/*
 * cow-pattern: write verifiable data to a device and to a model file.
 *
 * Every 512-byte sector written carries a header (magic, absolute sector,
 * seed, generation) and a body derived from them, so a wrong sector, a
 * stale generation or another chunk's data is told apart from the right one.
 *
 *   cow-pattern fill FILE SIZE SEED
 *       make a base image: every sector patterned with generation 0
 *   cow-pattern random DEV MODEL OPS SEED [JOBS [MAXBYTES]]
 *       JOBS processes each do OPS/JOBS O_DIRECT writes of 512 B..MAXBYTES
 *       (default 1 MiB) at random 512-byte offsets inside their own slice of
 *       the device (so the outcome is deterministic), to DEV and MODEL alike
 *   cow-pattern samechunk DEV MODEL CHUNK FIRST COUNT WRITERS READERS SEED BASESEED
 *       for COUNT chunks from FIRST: WRITERS threads write interleaved
 *       512-byte sectors of the chunk at once while READERS threads read it;
 *       every sector a reader sees must be the base's (BASESEED, generation
 *       0) or the new one
 *   cow-pattern put FILE FILE_OFFSET SECTOR COUNT SEED GEN
 *       write COUNT pattern sectors for device sectors SECTOR.. into FILE at
 *       byte FILE_OFFSET (to forge stores written by other programs)
 *   cow-pattern check FILE OFFSET LEN SEED GEN
 *       verify that a range holds the pattern (exit 1 and say where not)
 *   cow-pattern epochs DEV SEED COUNT WRITES REGION [CMD]
 *       COUNT epochs: epoch E (1..COUNT) makes WRITES O_DIRECT writes of
 *       generation E at random places in the first REGION bytes of DEV,
 *       then fsync()s, then runs CMD (with $EPOCH set) and prints
 *       "epoch E durable": the power-cut workload
 *   cow-pattern fresh DEV MODEL FIRST COUNT CHUNK SEED STOPFILE
 *       first writes: one O_DIRECT write of generation 1 to each chunk of
 *       CHUNK bytes from chunk FIRST on (even chunks whole, odd ones only
 *       their first half, so that the rest must be copied from the base),
 *       to DEV and MODEL alike, until STOPFILE exists; prints how many
 *       chunks it wrote; exit 3 if it wrote all COUNT before STOPFILE
 *       appeared
 *   cow-pattern verify-epochs DEV SEED BASESEED EPOCH WRITES REGION
 *       after a crash: every sector of the region holds the newest data
 *       that epochs 1..EPOCH wrote to it (or a later epoch's data, which
 *       may or may not have survived), or the base's when they wrote none
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECTOR 512
#define MAGIC 0x636f7770617474ULL /* "cowpatt" */

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void make_sector(uint64_t *buf, uint64_t sector, uint64_t seed, uint64_t gen)
{
	uint64_t x = sector * 0x100000001b3ULL ^ seed << 20 ^ gen;
	int i;

	buf[0] = MAGIC;
	buf[1] = sector;
	buf[2] = seed;
	buf[3] = gen;
	for (i = 4; i < SECTOR / 8; i++)
		buf[i] = splitmix(&x);
}

static void *xalloc(size_t len)
{
	void *p;

	if (posix_memalign(&p, 4096, len)) {
		perror("posix_memalign");
		exit(2);
	}
	return p;
}

static int write_all(int fd, const void *buf, size_t len, off_t off, const char *what)
{
	ssize_t n = pwrite(fd, buf, len, off);

	if (n != (ssize_t)len) {
		fprintf(stderr, "cow-pattern: write of %zu bytes at %lld to %s: %s\n", len,
			(long long)off, what, n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}

static int cmd_fill(const char *file, uint64_t size, uint64_t seed)
{
	const size_t step = 1 << 20;
	char *buf = xalloc(step);
	uint64_t off;
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0) {
		perror(file);
		return 2;
	}
	for (off = 0; off < size; off += step) {
		size_t len = size - off < step ? size - off : step, i;

		for (i = 0; i < len; i += SECTOR)
			make_sector((uint64_t *)(buf + i), (off + i) / SECTOR, seed, 0);
		if (write_all(fd, buf, len, (off_t)off, file))
			return 1;
	}
	free(buf);
	return close(fd) ? 1 : 0;
}

static int random_job(const char *dev, const char *model, uint64_t lo, uint64_t hi,
		      long ops, uint64_t seed, uint64_t max_bytes)
{
	int dfd = open(dev, O_RDWR | O_DIRECT), mfd = open(model, O_RDWR);
	char *buf = xalloc(max_bytes);
	uint64_t rng = seed;
	long op;

	if (dfd < 0 || mfd < 0) {
		perror(dfd < 0 ? dev : model);
		return 2;
	}
	for (op = 0; op < ops; op++) {
		uint64_t max_sectors = max_bytes / SECTOR, sectors, start, i;

		/* Mostly small, sometimes large; sometimes chunk-aligned. */
		switch (splitmix(&rng) % 4) {
		case 0: sectors = 1; break;
		case 1: sectors = 1 + splitmix(&rng) % 16; break;
		case 2: sectors = 1 + splitmix(&rng) % max_sectors; break;
		default: sectors = max_sectors; break;
		}
		if (sectors > hi - lo)
			sectors = hi - lo;
		start = lo + splitmix(&rng) % (hi - lo - sectors + 1);
		if (splitmix(&rng) % 3 == 0)
			start &= ~(uint64_t)127; /* 64 KiB aligned */
		for (i = 0; i < sectors; i++)
			make_sector((uint64_t *)(buf + i * SECTOR), start + i, seed, (uint64_t)op + 1);
		if (write_all(dfd, buf, sectors * SECTOR, (off_t)(start * SECTOR), dev) ||
		    write_all(mfd, buf, sectors * SECTOR, (off_t)(start * SECTOR), model))
			return 1;
	}
	if (fsync(dfd) || fsync(mfd)) {
		perror("fsync");
		return 1;
	}
	return 0;
}

static int cmd_random(const char *dev, const char *model, long ops, uint64_t seed, int jobs,
		      uint64_t max_bytes)
{
	int fd = open(dev, O_RDONLY), j, failed = 0;
	off_t size;
	uint64_t sectors;

	if (fd < 0 || (size = lseek(fd, 0, SEEK_END)) <= 0) {
		perror(dev);
		return 2;
	}
	close(fd);
	sectors = (uint64_t)size / SECTOR;
	for (j = 0; j < jobs; j++) {
		uint64_t lo = sectors * j / jobs, hi = sectors * (j + 1) / jobs;

		if (fork() == 0)
			_exit(random_job(dev, model, lo, hi, ops / jobs, seed * 1000 + j, max_bytes));
	}
	for (j = 0; j < jobs; j++) {
		int status;

		wait(&status);
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			failed = 1;
	}
	return failed;
}

struct same_ctx {
	const char *dev;
	uint64_t chunk_sectors, first_sector;
	int writers, index;
	uint64_t seed, base_seed;
	pthread_barrier_t *barrier;
	int failed;
};

static void *same_writer(void *arg)
{
	struct same_ctx *c = arg;
	int fd = open(c->dev, O_RDWR | O_DIRECT);
	uint64_t *buf = xalloc(SECTOR), s;

	pthread_barrier_wait(c->barrier);
	if (fd < 0) {
		c->failed = 1;
		return NULL;
	}
	for (s = (uint64_t)c->index; s < c->chunk_sectors; s += (uint64_t)c->writers) {
		make_sector(buf, c->first_sector + s, c->seed, 1);
		if (write_all(fd, buf, SECTOR, (off_t)((c->first_sector + s) * SECTOR), c->dev))
			c->failed = 1;
	}
	close(fd);
	free(buf);
	return NULL;
}

/* Each sector must be the base's (generation 0) or the new one (1). */
static void *same_reader(void *arg)
{
	struct same_ctx *c = arg;
	int fd = open(c->dev, O_RDONLY | O_DIRECT), round;
	size_t len = c->chunk_sectors * SECTOR;
	char *buf = xalloc(len);
	uint64_t *want = xalloc(SECTOR), s;

	pthread_barrier_wait(c->barrier);
	if (fd < 0) {
		c->failed = 1;
		return NULL;
	}
	for (round = 0; round < 4; round++) {
		if (pread(fd, buf, len, (off_t)(c->first_sector * SECTOR)) != (ssize_t)len) {
			perror("read during copy");
			c->failed = 1;
			break;
		}
		for (s = 0; s < c->chunk_sectors; s++) {
			uint64_t *got = (uint64_t *)(buf + s * SECTOR);

			make_sector(want, c->first_sector + s, c->base_seed, 0);
			if (!memcmp(got, want, SECTOR))
				continue;
			make_sector(want, c->first_sector + s, c->seed, 1);
			if (!memcmp(got, want, SECTOR))
				continue;
			fprintf(stderr, "cow-pattern: sector %" PRIu64 " read during the copy is neither base nor new data (header %" PRIx64 " %" PRIu64 " %" PRIu64 ")\n",
				c->first_sector + s, got[0], got[1], got[3]);
			c->failed = 1;
			break;
		}
	}
	close(fd);
	free(buf);
	free(want);
	return NULL;
}

static int cmd_samechunk(const char *dev, const char *model, uint64_t chunk_bytes,
			 uint64_t first, uint64_t count, int writers, int readers, uint64_t seed,
			 uint64_t base_seed)
{
	int mfd = open(model, O_RDWR), failed = 0;
	uint64_t chunk_sectors = chunk_bytes / SECTOR, k, s;
	uint64_t *buf = xalloc(SECTOR);

	if (mfd < 0) {
		perror(model);
		return 2;
	}
	for (k = first; k < first + count; k++) {
		int n = writers + readers, i;
		pthread_t *t = calloc((size_t)n, sizeof(*t));
		struct same_ctx *c = calloc((size_t)n, sizeof(*c));
		pthread_barrier_t barrier;

		pthread_barrier_init(&barrier, NULL, (unsigned int)n);
		for (i = 0; i < n; i++) {
			c[i] = (struct same_ctx){ .dev = dev, .chunk_sectors = chunk_sectors,
						  .first_sector = k * chunk_sectors,
						  .writers = writers, .index = i, .seed = seed,
						  .base_seed = base_seed, .barrier = &barrier };
			pthread_create(&t[i], NULL, i < writers ? same_writer : same_reader, &c[i]);
		}
		for (i = 0; i < n; i++) {
			pthread_join(t[i], NULL);
			failed |= c[i].failed;
		}
		pthread_barrier_destroy(&barrier);
		free(t);
		free(c);
		for (s = 0; s < chunk_sectors; s++) {
			make_sector(buf, k * chunk_sectors + s, seed, 1);
			if (write_all(mfd, buf, SECTOR, (off_t)((k * chunk_sectors + s) * SECTOR), model))
				failed = 1;
		}
	}
	free(buf);
	close(mfd);
	return failed;
}

static int cmd_check(const char *file, uint64_t off, uint64_t len, uint64_t seed, uint64_t gen)
{
	int fd = open(file, O_RDONLY);
	uint64_t *want = xalloc(SECTOR), *got = xalloc(SECTOR), s;

	if (fd < 0) {
		perror(file);
		return 2;
	}
	for (s = off / SECTOR; s < (off + len) / SECTOR; s++) {
		make_sector(want, s, seed, gen);
		if (pread(fd, got, SECTOR, (off_t)(s * SECTOR)) != SECTOR || memcmp(got, want, SECTOR)) {
			fprintf(stderr, "cow-pattern: sector %" PRIu64 " of %s does not hold seed %" PRIu64 " generation %" PRIu64 " (it has sector %" PRIu64 " seed %" PRIu64 " generation %" PRIu64 ")\n",
				s, file, seed, gen, got[1], got[2], got[3]);
			return 1;
		}
	}
	close(fd);
	return 0;
}

static int cmd_put(const char *file, uint64_t file_off, uint64_t sector, uint64_t count,
		   uint64_t seed, uint64_t gen)
{
	int fd = open(file, O_WRONLY);
	uint64_t *buf = xalloc(SECTOR), i;

	if (fd < 0) {
		perror(file);
		return 2;
	}
	for (i = 0; i < count; i++) {
		make_sector(buf, sector + i, seed, gen);
		if (write_all(fd, buf, SECTOR, (off_t)(file_off + i * SECTOR), file))
			return 1;
	}
	free(buf);
	return close(fd) ? 1 : 0;
}

/* Epoch @e's writes: the same sequence for the writer and the verifier. */
struct epoch_rng {
	uint64_t state;
};

static void epoch_write(struct epoch_rng *r, uint64_t region_sectors, uint64_t *start,
			uint64_t *sectors)
{
	switch (splitmix(&r->state) % 4) {
	case 0: *sectors = 1; break;
	case 1: *sectors = 1 + splitmix(&r->state) % 16; break;
	case 2: *sectors = 1 + splitmix(&r->state) % 256; break;
	default: *sectors = 128; break;
	}
	if (*sectors > region_sectors)
		*sectors = region_sectors;
	*start = splitmix(&r->state) % (region_sectors - *sectors + 1);
	if (splitmix(&r->state) % 3 == 0)
		*start &= ~(uint64_t)127;
}

static struct epoch_rng epoch_rng(uint64_t seed, uint64_t epoch)
{
	return (struct epoch_rng){ seed * 1000003ULL + epoch };
}

static int cmd_epochs(const char *dev, uint64_t seed, uint64_t count, uint64_t writes,
		      uint64_t region, const char *cmd)
{
	int fd = open(dev, O_RDWR | O_DIRECT);
	char *buf = xalloc(256 * SECTOR);
	uint64_t e, w, i;

	if (fd < 0) {
		perror(dev);
		return 2;
	}
	for (e = 1; e <= count; e++) {
		struct epoch_rng r = epoch_rng(seed, e);
		char env[32];

		for (w = 0; w < writes; w++) {
			uint64_t start, sectors;

			epoch_write(&r, region / SECTOR, &start, &sectors);
			for (i = 0; i < sectors; i++)
				make_sector((uint64_t *)(buf + i * SECTOR), start + i, seed, e);
			if (write_all(fd, buf, sectors * SECTOR, (off_t)(start * SECTOR), dev))
				return 1;
		}
		if (fsync(fd)) {
			perror("fsync");
			return 1;
		}
		snprintf(env, sizeof(env), "%" PRIu64, e);
		setenv("EPOCH", env, 1);
		if (cmd && system(cmd) != 0) {
			fprintf(stderr, "cow-pattern: '%s' failed\n", cmd);
			return 1;
		}
		printf("epoch %" PRIu64 " durable\n", e);
		fflush(stdout);
	}
	free(buf);
	return close(fd) ? 1 : 0;
}

static int cmd_verify_epochs(const char *dev, uint64_t seed, uint64_t base_seed, uint64_t epoch,
			     uint64_t writes, uint64_t region)
{
	uint64_t nsect = region / SECTOR, e, w, s, later = 0;
	uint32_t *newest = calloc(nsect, sizeof(*newest));
	uint64_t *want = xalloc(SECTOR);
	const size_t step = 1 << 20;
	char *buf = xalloc(step);
	int fd = open(dev, O_RDONLY | O_DIRECT), failed = 0;

	if (fd < 0 || !newest) {
		perror(dev);
		return 2;
	}
	for (e = 1; e <= epoch; e++) {
		struct epoch_rng r = epoch_rng(seed, e);

		for (w = 0; w < writes; w++) {
			uint64_t start, sectors;

			epoch_write(&r, nsect, &start, &sectors);
			for (s = start; s < start + sectors; s++)
				newest[s] = (uint32_t)e;
		}
	}
	for (s = 0; s < nsect && failed < 10; s++) {
		uint64_t *got = (uint64_t *)(buf + (s * SECTOR) % step), gen;

		if ((s * SECTOR) % step == 0) {
			size_t len = (nsect - s) * SECTOR < step ? (nsect - s) * SECTOR : step;

			if (pread(fd, buf, len, (off_t)(s * SECTOR)) != (ssize_t)len) {
				perror("read");
				return 1;
			}
		}
		gen = got[3];
		if (gen == 0)
			make_sector(want, s, base_seed, 0);
		else
			make_sector(want, s, seed, gen);
		if (!memcmp(got, want, SECTOR) && gen >= newest[s]) {
			later += gen > epoch;
			continue;
		}
		fprintf(stderr, "cow-pattern: after epoch %" PRIu64 ", sector %" PRIu64 " should hold generation %u or newer; it holds %s generation %" PRIu64 "\n",
			epoch, s, newest[s], memcmp(got, want, SECTOR) ? "garbage claiming" : "", gen);
		failed++;
	}
	if (!failed)
		printf("epoch %" PRIu64 ": all %" PRIu64 " sectors right (%" PRIu64 " from later epochs)\n",
		       epoch, nsect, later);
	free(newest);
	free(want);
	free(buf);
	close(fd);
	return failed ? 1 : 0;
}

static int cmd_fresh(const char *dev, const char *model, uint64_t first, uint64_t count,
		     uint64_t chunk_bytes, uint64_t seed, const char *stopfile)
{
	int dfd = open(dev, O_RDWR | O_DIRECT), mfd = open(model, O_RDWR);
	uint64_t chunk_sectors = chunk_bytes / SECTOR, n, i;
	char *buf = xalloc(chunk_bytes);

	if (dfd < 0 || mfd < 0) {
		perror(dfd < 0 ? dev : model);
		return 2;
	}
	for (n = 0; n < count && access(stopfile, F_OK); n++) {
		uint64_t chunk = first + n, start = chunk * chunk_sectors;
		uint64_t sectors = chunk % 2 ? chunk_sectors / 2 : chunk_sectors;

		for (i = 0; i < sectors; i++)
			make_sector((uint64_t *)(buf + i * SECTOR), start + i, seed, 1);
		if (write_all(dfd, buf, sectors * SECTOR, (off_t)(start * SECTOR), dev) ||
		    write_all(mfd, buf, sectors * SECTOR, (off_t)(start * SECTOR), model))
			return 1;
	}
	printf("%" PRIu64 "\n", n);
	free(buf);
	if (close(dfd) || close(mfd))
		return 1;
	return n == count ? 3 : 0;
}

static uint64_t num(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	if (*end == 'k' || *end == 'K')
		v <<= 10;
	else if (*end == 'M')
		v <<= 20;
	else if (*end == 'G')
		v <<= 30;
	return v;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "fill"))
		return cmd_fill(argv[2], num(argv[3]), num(argv[4]));
	if ((argc >= 6 && argc <= 8) && !strcmp(argv[1], "random"))
		return cmd_random(argv[2], argv[3], (long)num(argv[4]), num(argv[5]),
				  argc > 6 ? (int)num(argv[6]) : 1, argc > 7 ? num(argv[7]) : 1 << 20);
	if (argc == 11 && !strcmp(argv[1], "samechunk"))
		return cmd_samechunk(argv[2], argv[3], num(argv[4]), num(argv[5]), num(argv[6]),
				     (int)num(argv[7]), (int)num(argv[8]), num(argv[9]),
				     num(argv[10]));
	if (argc == 8 && !strcmp(argv[1], "put"))
		return cmd_put(argv[2], num(argv[3]), num(argv[4]), num(argv[5]), num(argv[6]),
			       num(argv[7]));
	if (argc == 7 && !strcmp(argv[1], "check"))
		return cmd_check(argv[2], num(argv[3]), num(argv[4]), num(argv[5]), num(argv[6]));
	if ((argc == 7 || argc == 8) && !strcmp(argv[1], "epochs"))
		return cmd_epochs(argv[2], num(argv[3]), num(argv[4]), num(argv[5]), num(argv[6]),
				  argc > 7 ? argv[7] : NULL);
	if (argc == 9 && !strcmp(argv[1], "fresh"))
		return cmd_fresh(argv[2], argv[3], num(argv[4]), num(argv[5]), num(argv[6]),
				 num(argv[7]), argv[8]);
	if (argc == 8 && !strcmp(argv[1], "verify-epochs"))
		return cmd_verify_epochs(argv[2], num(argv[3]), num(argv[4]), num(argv[5]),
					 num(argv[6]), num(argv[7]));
	fprintf(stderr, "usage: see the comment at the top of tests/helpers/cow-pattern.c\n");
	return 2;
}
