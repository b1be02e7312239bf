// SPDX-License-Identifier: GPL-2.0-only
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cow-plugin.h"
#include "cowctl-args.h"
#include "dm-cow-proto.h"

static int fail(struct cowctl_args *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->error, sizeof(a->error), fmt, ap);
	va_end(ap);
	return -1;
}

int parse_size(const char *s, uint64_t *bytes)
{
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (!strcasecmp(end, "") || !strcasecmp(end, "b"))
		mult = 1;
	else if (!strcasecmp(end, "k") || !strcasecmp(end, "kib") || !strcasecmp(end, "kb"))
		mult = 1ULL << 10;
	else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib") || !strcasecmp(end, "mb"))
		mult = 1ULL << 20;
	else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib") || !strcasecmp(end, "gb"))
		mult = 1ULL << 30;
	else if (!strcasecmp(end, "t") || !strcasecmp(end, "tib") || !strcasecmp(end, "tb"))
		mult = 1ULL << 40;
	else
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*bytes = v * mult;
	return 0;
}

int name_valid(const char *name)
{
	size_t i, len = strlen(name);

	if (!len || len > COW_IDENT_MAX || name[0] == '.' || name[0] == '-')
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return 0;
	return 1;
}

static const struct {
	const char *name;
	enum cowctl_cmd cmd;
	int min, max; /* positional arguments after the command */
} commands[] = {
	{ "create", CMD_CREATE, 3, 3 },
	{ "remove", CMD_REMOVE, 1, 1 },
	{ "status", CMD_STATUS, 1, 1 },
	{ "list", CMD_LIST, 0, 0 },
	{ "check", CMD_CHECK, 1, 2 },
	{ "dump", CMD_DUMP, 1, 2 },
	{ "info", CMD_INFO, 1, 2 },
	{ "map", CMD_MAP, 1, 2 },
	{ "merge", CMD_MERGE, 1, 2 },
	{ "reset", CMD_RESET, 1, 1 },
	{ "convert", CMD_CONVERT, 1, 2 },
	{ "resize", CMD_RESIZE, 2, 2 },
	{ "help", CMD_HELP, 0, 0 },
};

enum {
	OPT_JSON = 256, OPT_READ_ONLY, OPT_BASE_RO, OPT_IN_PLACE, OPT_OUT, OPT_CHUNK, OPT_FORMAT,
	OPT_FORCE, OPT_IGNORE_MTIME, OPT_BASE_ID, OPT_NO_DAEMON, OPT_REPAIR,
};

static const struct option long_options[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "read-only", no_argument, NULL, OPT_READ_ONLY },
	{ "base-ro", no_argument, NULL, OPT_BASE_RO },
	{ "in-place", no_argument, NULL, OPT_IN_PLACE },
	{ "out", required_argument, NULL, OPT_OUT },
	{ "chunk", required_argument, NULL, OPT_CHUNK },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "ignore-base-mtime", no_argument, NULL, OPT_IGNORE_MTIME },
	{ "base-id", required_argument, NULL, OPT_BASE_ID },
	{ "no-daemon", no_argument, NULL, OPT_NO_DAEMON },
	{ "repair", no_argument, NULL, OPT_REPAIR },
	{ NULL, 0, NULL, 0 },
};

/* Whether option @opt belongs to command @cmd. */
static int option_applies(int opt, enum cowctl_cmd cmd)
{
	switch (opt) {
	case OPT_JSON:
		return cmd == CMD_STATUS || cmd == CMD_DUMP || cmd == CMD_INFO || cmd == CMD_MAP ||
		       cmd == CMD_LIST || cmd == CMD_CHECK;
	case OPT_CHUNK:
	case OPT_FORMAT:
		return cmd == CMD_CREATE || cmd == CMD_CONVERT;
	case OPT_READ_ONLY:
	case OPT_BASE_RO:
	case OPT_FORCE:
	case OPT_NO_DAEMON:
		return cmd == CMD_CREATE;
	case OPT_IN_PLACE:
		return cmd == CMD_MERGE;
	case OPT_REPAIR:
		return cmd == CMD_CHECK;
	case OPT_OUT:
		return cmd == CMD_MERGE || cmd == CMD_CONVERT;
	case OPT_IGNORE_MTIME:
	case OPT_BASE_ID:
		return cmd == CMD_CREATE || cmd == CMD_CHECK || cmd == CMD_DUMP || cmd == CMD_MERGE ||
		       cmd == CMD_INFO || cmd == CMD_MAP || cmd == CMD_CONVERT;
	default:
		return 1;
	}
}

/* The option argv[optind - 1] names, for messages. */
static const char *option_text(char **argv, int index)
{
	return index > 0 ? argv[index - 1] : "?";
}

int cowctl_parse(int argc, char **argv, struct cowctl_args *a)
{
	const char *pos[3];
	int npos = 0, nargs = -1, min = 0, opt;
	size_t c;

	memset(a, 0, sizeof(*a));
	a->cmd = CMD_HELP;
	a->chunk_bytes = COWCTL_DEFAULT_CHUNK;
	if (argc < 2)
		return fail(a, "no command given");
	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		if (!strcmp(argv[1], commands[c].name)) {
			a->cmd = commands[c].cmd;
			min = commands[c].min;
			nargs = commands[c].max;
		}
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return 0;
	if (nargs < 0)
		return fail(a, "unknown command '%s'", argv[1]);

	/* Options and arguments after the command, in any order. */
	optind = 0;	/* a full reset: cowctl_parse may be called again */
	opterr = 0;
	while ((opt = getopt_long(argc - 1, argv + 1, ":h", long_options, NULL)) != -1) {
		const char *v = optarg;

		if (opt == 'h') {
			a->cmd = CMD_HELP;
			return 0;
		}
		if (opt == ':')
			return fail(a, "%s", optopt == OPT_CHUNK ? "--chunk needs a size, e.g. --chunk 64k" :
				    optopt == OPT_FORMAT ? "--format needs a name, e.g. --format uml" :
				    optopt == OPT_BASE_ID ? "--base-id needs a label, e.g. --base-id debian-12.8" :
				    "--out needs a file name");
		if (opt == '?' || !option_applies(opt, a->cmd))
			return fail(a, "unknown option '%s' for %s", option_text(argv + 1, optind),
				    argv[1]);
		switch (opt) {
		case OPT_JSON:
			a->json = 1;
			break;
		case OPT_READ_ONLY:
			a->read_only = 1;
			break;
		case OPT_BASE_RO:
			a->base_ro = 1;
			break;
		case OPT_FORCE:
			a->force = 1;
			break;
		case OPT_NO_DAEMON:
			a->no_daemon = 1;
			break;
		case OPT_REPAIR:
			a->repair = 1;
			break;
		case OPT_IGNORE_MTIME:
			a->ignore_base_mtime = 1;
			break;
		case OPT_BASE_ID:
			if (!*v || strlen(v) > COW_BASE_ID_MAX)
				return fail(a, "--base-id needs a label of 1 to %d bytes", COW_BASE_ID_MAX);
			a->base_id = v;
			break;
		case OPT_IN_PLACE:
			a->in_place = 1;
			break;
		case OPT_OUT:
			if (!*v)
				return fail(a, "--out needs a file name");
			a->out = v;
			break;
		case OPT_CHUNK:
			if (parse_size(v, &a->chunk_bytes))
				return fail(a, "bad chunk size '%s'", v);
			a->chunk_given = 1;
			if (a->chunk_bytes < 4096 || a->chunk_bytes > (1ULL << 30) ||
			    (a->chunk_bytes & (a->chunk_bytes - 1)))
				return fail(a, "chunk size must be a power of two from 4k to 1G, not '%s'", v);
			break;
		case OPT_FORMAT:
			if (!*v)
				return fail(a, "--format needs a name, e.g. --format uml");
			a->format = v;
			break;
		}
	}
	for (; optind < argc - 1; optind++) {
		if (npos == nargs)
			return fail(a, "too many arguments for %s", argv[1]);
		pos[npos++] = argv[optind + 1];
	}
	if (npos < min)
		return fail(a, "%s needs %d argument%s", argv[1], min, min > 1 ? "s" : "");
	if (a->cmd == CMD_CHECK || a->cmd == CMD_DUMP || a->cmd == CMD_MERGE ||
	    a->cmd == CMD_INFO || a->cmd == CMD_MAP || a->cmd == CMD_CONVERT) {
		a->store = pos[0];
		a->base = npos > 1 ? pos[1] : NULL;
		if (a->cmd == CMD_CONVERT && (!a->out || !a->format))
			return fail(a, "convert needs --format FMT and --out FILE, as in "
				    "cowctl convert STORE --format packed --out NEW");
		if (a->cmd == CMD_MERGE && !a->out == !a->in_place)
			return fail(a, "merge needs either --out FILE or --in-place");
		if (a->in_place && !a->base)
			return fail(a, "merge --in-place writes into the base: name it, as in "
				    "cowctl merge STORE BASE --in-place");
		return 0;
	}
	if (nargs >= 1) {
		a->name = pos[0];
		if (!name_valid(a->name))
			return fail(a, "bad name '%s': use 1-64 letters, digits, '.', '_' or '-'", a->name);
	}
	if (nargs == 3) {
		a->base = pos[1];
		a->cow = pos[2];
	}
	if (a->cmd == CMD_RESIZE) {
		const char *v = pos[1];

		a->size_relative = *v == '+';
		if (parse_size(v + a->size_relative, &a->size_bytes) || !a->size_bytes ||
		    a->size_bytes % 512)
			return fail(a, "bad size '%s': a multiple of 512 bytes, as in 20G, or +5G for "
				    "5 GiB more", v);
	}
	return 0;
}
