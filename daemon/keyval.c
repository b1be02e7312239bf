// SPDX-License-Identifier: GPL-2.0-only
/* key=value texts: see keyval.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyval.h"

static int set_field(const struct kv_field *f, const char *value, void *out)
{
	char *p = (char *)out + f->offset, *end;

	errno = 0;
	switch (f->type) {
	case KV_U64: {
		unsigned long long v = strtoull(value, &end, 10);

		if (end == value || *end || errno || value[0] == '-')
			return 0;
		*(unsigned long long *)p = v;
		return 1;
	}
	case KV_INT: {
		long v = strtol(value, &end, 10);

		if (end == value || *end || errno || v < -2147483647L - 1 || v > 2147483647L)
			return 0;
		*(int *)p = (int)v;
		return 1;
	}
	case KV_DOUBLE: {
		double v = strtod(value, &end);

		if (end == value || *end || errno)
			return 0;
		*(double *)p = v;
		return 1;
	}
	case KV_STR:
		snprintf(p, f->size, "%s", value);
		return 1;
	default:
		return 0;
	}
}

int kv_parse(const char *text, const struct kv_field *fields, size_t n, void *out)
{
	char *copy = strdup(text), *word, *save = NULL;
	int set = 0;
	size_t i;

	if (!copy)
		return 0;
	for (word = strtok_r(copy, " \t\n", &save); word; word = strtok_r(NULL, " \t\n", &save)) {
		char *value = strchr(word, '=');

		if (value)
			*value++ = 0;
		for (i = 0; i < n; i++) {
			if (strcmp(word, fields[i].key))
				continue;
			if (!value && fields[i].type == KV_FLAG) {
				*(int *)((char *)out + fields[i].offset) = 1;
				set++;
			} else if (value && fields[i].type != KV_FLAG) {
				set += set_field(&fields[i], value, out);
			}
			break;
		}
	}
	free(copy);
	return set;
}
