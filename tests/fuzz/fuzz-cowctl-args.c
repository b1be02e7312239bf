// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness for cowctl's command line: the input, split at NUL
 * bytes, is argv.  Crashes and sanitizer reports are findings; so is a
 * parse that succeeds with a result cowctl would then misuse (a name that
 * name_valid() refuses, a chunk size that is not a power of two >= 4 KiB).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowctl-args.h"

#define MAX_ARGS 32

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	char *copy = malloc(len + 1), *argv[MAX_ARGS + 2];
	struct cowctl_args a;
	size_t i, start = 0;
	int argc = 1;

	if (!copy)
		return 0;
	memcpy(copy, data, len);
	copy[len] = 0;
	argv[0] = "cowctl";
	for (i = 0; i <= len && argc <= MAX_ARGS; i++) {
		if (copy[i])
			continue;
		argv[argc++] = copy + start;
		start = i + 1;
	}
	argv[argc] = NULL;
	optind = 0;	/* getopt_long starts over, as in a fresh process */
	if (!cowctl_parse(argc, argv, &a)) {
		if (a.name && !name_valid(a.name)) {
			fprintf(stderr, "accepted the name '%s'\n", a.name);
			abort();
		}
		if (a.chunk_given && (a.chunk_bytes < 4096 || (a.chunk_bytes & (a.chunk_bytes - 1)))) {
			fprintf(stderr, "accepted the chunk size %llu\n", (unsigned long long)a.chunk_bytes);
			abort();
		}
	} else if (!a.error[0]) {
		fprintf(stderr, "refused without saying why\n");
		abort();
	}
	free(copy);
	return 0;
}
