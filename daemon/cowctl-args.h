/* SPDX-License-Identifier: GPL-2.0-only */
/* cowctl's command line, parsed without global state (unit-tested). */
#ifndef COWCTL_ARGS_H
#define COWCTL_ARGS_H

#include <stdint.h>

#define COWCTL_DEFAULT_CHUNK (64 * 1024)

enum cowctl_cmd {
	CMD_HELP,
	CMD_CREATE,
	CMD_REMOVE,
	CMD_STATUS,
	CMD_LIST,
	CMD_CHECK,
	CMD_DUMP,
	CMD_INFO,
	CMD_MAP,
	CMD_MERGE,
	CMD_RESET,
	CMD_CONVERT,
	CMD_RESIZE,
};

struct cowctl_args {
	enum cowctl_cmd cmd;
	const char *name;
	const char *base;
	const char *cow;
	uint64_t chunk_bytes;
	int chunk_given;	/* --chunk was on the command line */
	const char *format;	/* create, convert --format */
	const char *store;	/* check, dump, merge, convert: the store's path */
	const char *out;	/* merge --out, convert --out */
	int in_place;		/* merge --in-place */
	int read_only;		/* create --read-only */
	int base_ro;		/* create --base-ro */
	int no_daemon;		/* create --no-daemon */
	int force;		/* create --force: format over a foreign signature */
	int ignore_base_mtime;	/* --ignore-base-mtime: a UML base file's mtime changed */
	const char *base_id;	/* --base-id: the base's label (packed) */
	int repair;		/* check --repair */
	uint64_t size_bytes;	/* resize: the new size, or how much more */
	int size_relative;	/* resize +SIZE */
	int json;
	char error[256];
};

/* 0 on success; else -1 and a->error says what is wrong. */
int cowctl_parse(int argc, char **argv, struct cowctl_args *a);

/* "4096", "64k", "64KiB", "1M", "1MiB", "2G", "1T": bytes.  0 or -1. */
int parse_size(const char *s, uint64_t *bytes);

/* A valid device/group name: 1-64 of [A-Za-z0-9._-], not starting with . or -. */
int name_valid(const char *name);

#endif
