// SPDX-License-Identifier: GPL-2.0-only
#include <stdio.h>

#include "run-status.h"

int run_status_read(const char *ident, const struct kv_field *fields, size_t n, void *out)
{
	char path[160], text[4096];
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), RUN_DIR "/%s.status", ident);
	f = fopen(path, "re");
	if (!f)
		return 0;
	len = fread(text, 1, sizeof(text) - 1, f);
	text[len] = 0;
	fclose(f);
	kv_parse(text, fields, n, out);
	return 1;
}
