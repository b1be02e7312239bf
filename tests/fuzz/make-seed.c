// SPDX-License-Identifier: GPL-2.0-only
/*
 * Seeds for fuzz-store: a store made or extended by the plugin linked in,
 * through the calls cowd makes (create, open, locate, mark, commit), over a
 * base of zeros as fuzz-store assumes; trailing zeros are cut, as
 * fuzz-store gives them back.
 *
 *   make-seed STORE BASE_BYTES CHUNK_SECTORS CHUNKS...
 *
 * A STORE that exists and is not empty (made by qemu-img, uml_mkcow) is
 * opened as it is; otherwise it is created as a 1 MiB store.  Each CHUNK
 * is mapped and committed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cow-plugin.h"
#include "cow-store.h"

const struct cow_plugin *cow_plugin_init(void);

static int trim(int fd)
{
	char buf[512];
	struct stat st;
	off_t end;

	if (fstat(fd, &st))
		return -1;
	for (end = st.st_size / 512 * 512; end > 0; end -= 512)
		if (pread_full(fd, buf, 512, (uint64_t)end - 512) || !buf_is_zero(buf, 512))
			break;
	return ftruncate(fd, end);
}

int main(int argc, char **argv)
{
	const struct cow_plugin *p = cow_plugin_init();
	struct cow_store s = { 0 };
	struct stat st;
	static char data[1 << 21];
	int i, valid;

	if (argc < 4) {
		fprintf(stderr, "usage: make-seed STORE BASE_BYTES CHUNK_SECTORS CHUNKS...\n");
		return 2;
	}
	s.base_size = strtoull(argv[2], NULL, 0);
	s.chunk_sectors = (uint32_t)strtoul(argv[3], NULL, 0);
	s.base_fd = memfd_create("base", MFD_CLOEXEC);
	s.cow_fd = open(argv[1], O_RDWR | O_CREAT, 0644);
	s.base_name = "base.img";
	s.base_id = getenv("SEED_BASE_ID");	/* a labelled store (packed) */
	if (s.base_fd < 0 || ftruncate(s.base_fd, (off_t)s.base_size) || s.cow_fd < 0 ||
	    fstat(s.cow_fd, &st)) {
		perror(argv[1]);
		return 1;
	}
	if (!st.st_size) {
		if (ftruncate(s.cow_fd, 1 << 20))
			return 1;
		s.cow_size = 1 << 20;
		if (p->create(&s)) {
			fprintf(stderr, "%s: create: %s\n", argv[1], s.error);
			return 1;
		}
	} else {
		s.cow_size = (uint64_t)st.st_size;
	}
	/* Room for the mappings, as fuzz-store gives it. */
	s.cow_size += 1 << 20;
	if (ftruncate(s.cow_fd, (off_t)s.cow_size) || p->open(&s)) {
		fprintf(stderr, "%s: open: %s\n", argv[1], s.error);
		return 1;
	}
	for (i = 4; i < argc; i++) {
		uint64_t chunk = strtoull(argv[i], NULL, 0), sector;

		memset(data, i, sizeof(data));
		if (p->locate(&s, chunk, &sector, &valid) ||
		    (!valid && pwrite_full(s.cow_fd, data, s.chunk_sectors * (size_t)COW_SECTOR,
					   sector * COW_SECTOR)) ||
		    p->mark(&s, chunk, sector)) {
			fprintf(stderr, "%s: chunk %llu: %s\n", argv[1], (unsigned long long)chunk,
				s.error);
			return 1;
		}
	}
	if (p->commit(&s)) {
		fprintf(stderr, "%s: commit: %s\n", argv[1], s.error);
		return 1;
	}
	p->close(&s);
	return trim(s.cow_fd) ? 1 : 0;
}
