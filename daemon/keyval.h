/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One parser for the key=value texts dm-cow publishes: the cow target's
 * status line ("mapped=12 pending=0 ... daemon=attached full") and cowd's
 * status file (one key=value per line).  Words are separated by blanks or
 * newlines; a word without '=' is a flag.
 */
#ifndef COW_KEYVAL_H
#define COW_KEYVAL_H

#include <stddef.h>

enum kv_type {
	KV_U64,		/* unsigned long long */
	KV_INT,		/* int */
	KV_DOUBLE,	/* double */
	KV_STR,		/* char[size] */
	KV_FLAG,	/* int, set to 1 by the bare word */
};

struct kv_field {
	const char *key;
	enum kv_type type;
	size_t offset;		/* into the caller's struct */
	size_t size;		/* KV_STR: the buffer's size */
};

#define KV(type_, st, member, key_) \
	{ key_, type_, offsetof(st, member), sizeof(((st *)0)->member) }

/*
 * Fill the fields of @out that @text names; unknown words are skipped, a
 * value that is not a number leaves its field as it was.  Returns how many
 * fields were set.
 */
int kv_parse(const char *text, const struct kv_field *fields, size_t n, void *out);

#endif
