// SPDX-License-Identifier: GPL-2.0-only
/* The one key=value parser: the cow status line and cowd's status file. */
#include <string.h>

#include "check.h"
#include "keyval.h"

struct fields {
	unsigned long long mapped, commits;
	int capped, full, failing;
	double ms;
	char daemon[8];
};

static const struct kv_field F[] = {
	KV(KV_U64, struct fields, mapped, "mapped"),
	KV(KV_U64, struct fields, commits, "commits"),
	KV(KV_INT, struct fields, capped, "capped"),
	KV(KV_FLAG, struct fields, full, "full"),
	KV(KV_FLAG, struct fields, failing, "failing"),
	KV(KV_DOUBLE, struct fields, ms, "max_suspend_ms"),
	KV(KV_STR, struct fields, daemon, "daemon"),
};
#define N (sizeof(F) / sizeof(F[0]))

int main(void)
{
	struct fields f;
	int n;

	TEST("the kernel's status line");
	memset(&f, 0, sizeof(f));
	n = kv_parse("mapped=12 pending=0 copying=1 commits=7 daemon=attached rejected=3 full", F, N, &f);
	CHECK(n == 4 && f.mapped == 12 && f.commits == 7 && f.full == 1 && !f.failing,
	      "n=%d mapped=%llu commits=%llu full=%d", n, f.mapped, f.commits, f.full);
	CHECK(!strcmp(f.daemon, "attache"), "a string is cut to its buffer: '%s'", f.daemon);

	TEST("cowd's status file");
	memset(&f, 0, sizeof(f));
	n = kv_parse("format=qcow2\ncapped=1\nmax_suspend_ms=12.5\nfailing\n", F, N, &f);
	CHECK(n == 3 && f.capped == 1 && f.ms == 12.5 && f.failing == 1, "n=%d capped=%d ms=%g",
	      n, f.capped, f.ms);

	TEST("values that are not numbers leave their fields alone");
	memset(&f, 0, sizeof(f));
	f.mapped = 5;
	f.capped = 9;
	n = kv_parse("mapped=-1 mapped=12x mapped= capped=99999999999 commits=18446744073709551616 "
		     "full=1 mapped", F, N, &f);
	CHECK(n == 0 && f.mapped == 5 && f.capped == 9 && f.commits == 0 && !f.full,
	      "n=%d mapped=%llu capped=%d commits=%llu full=%d", n, f.mapped, f.capped, f.commits,
	      f.full);
	CHECK(kv_parse("", F, N, &f) == 0, "empty text");
	return check_done("test-keyval");
}
