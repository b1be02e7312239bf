// SPDX-License-Identifier: GPL-2.0-only
/* cowctl's command-line parsing. */
#include <string.h>

#include "check.h"
#include "cowctl-args.h"

#define ARGV(...) ((char *[]){ "cowctl", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "cowctl", __VA_ARGS__ }) / sizeof(char *)))
#define PARSE(a, ...) cowctl_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a))

static void test_sizes(void)
{
	uint64_t v;

	TEST("sizes");
	CHECK(parse_size("4096", &v) == 0 && v == 4096, "plain");
	CHECK(parse_size("64k", &v) == 0 && v == 65536, "k");
	CHECK(parse_size("64KiB", &v) == 0 && v == 65536, "KiB");
	CHECK(parse_size("1M", &v) == 0 && v == 1 << 20, "M");
	CHECK(parse_size("2g", &v) == 0 && v == 2ULL << 30, "g");
	CHECK(parse_size("", &v) == -1, "empty");
	CHECK(parse_size("k", &v) == -1, "no number");
	CHECK(parse_size("-4k", &v) == -1, "negative");
	CHECK(parse_size("4x", &v) == -1, "bad unit");
	CHECK(parse_size("99999999999999999999", &v) == -1, "overflow");
	CHECK(parse_size("17179869184G", &v) == -1, "overflow by unit");
	CHECK(parse_size("3T", &v) == 0 && v == 3ULL << 40, "T");
}

static void test_names(void)
{
	char long_name[80];

	TEST("names");
	CHECK(name_valid("guest-1.root_fs"), "ordinary");
	CHECK(!name_valid(""), "empty");
	CHECK(!name_valid(".hidden"), "leading dot");
	CHECK(!name_valid("-x"), "leading dash");
	CHECK(!name_valid("a/b"), "slash");
	CHECK(!name_valid("a b"), "space");
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = 0;
	CHECK(!name_valid(long_name), "too long");
	long_name[64] = 0;
	CHECK(name_valid(long_name), "64 is the limit");
}

static void test_commands(void)
{
	struct cowctl_args a;

	TEST("create");
	CHECK(PARSE(&a, "create", "g1", "base.img", "g1.cow") == 0, "%s", a.error);
	CHECK(a.cmd == CMD_CREATE && !strcmp(a.name, "g1") && !strcmp(a.base, "base.img") &&
	      !strcmp(a.cow, "g1.cow"), "fields");
	CHECK(a.chunk_bytes == COWCTL_DEFAULT_CHUNK && !a.format, "defaults");
	CHECK(PARSE(&a, "create", "--chunk", "16k", "g1", "b", "c") == 0 && a.chunk_bytes == 16384,
	      "option first: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--chunk=1M", "--format", "uml") == 0 &&
	      a.chunk_bytes == 1 << 20 && !strcmp(a.format, "uml"), "options last: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--chunk", "3k") == -1 && strstr(a.error, "power of two"),
	      "chunk not a power of two: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--chunk", "2k") == -1, "chunk below 4k");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--chunk") == -1 && strstr(a.error, "needs a size"),
	      "missing value: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b") == -1 && strstr(a.error, "needs 3"), "too few: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c", "d") == -1 && strstr(a.error, "too many"),
	      "too many: %s", a.error);
	CHECK(PARSE(&a, "create", "bad/name", "b", "c") == -1 && strstr(a.error, "bad name"),
	      "bad name: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--json") == -1 && strstr(a.error, "unknown option"),
	      "--json is for status: %s", a.error);

	TEST("resize");
	CHECK(PARSE(&a, "resize", "g1", "20G") == 0 && a.cmd == CMD_RESIZE && !strcmp(a.name, "g1") &&
	      a.size_bytes == 20ULL << 30 && !a.size_relative, "resize NAME SIZE: %s", a.error);
	CHECK(PARSE(&a, "resize", "g1", "+512M") == 0 && a.size_bytes == 512ULL << 20 &&
	      a.size_relative, "resize NAME +SIZE: %s", a.error);
	CHECK(PARSE(&a, "resize", "g1", "1000") == -1 && strstr(a.error, "multiple of 512"),
	      "not whole sectors: %s", a.error);
	CHECK(PARSE(&a, "resize", "g1", "0") == -1, "zero");
	CHECK(PARSE(&a, "resize", "g1", "-1G") == -1, "shrink by: refused");
	CHECK(PARSE(&a, "resize", "g1") == -1 && strstr(a.error, "needs 2"), "no size: %s", a.error);

	TEST("other commands");
	CHECK(PARSE(&a, "remove", "g1") == 0 && a.cmd == CMD_REMOVE, "remove");
	CHECK(PARSE(&a, "remove") == -1, "remove needs a name");
	CHECK(PARSE(&a, "status", "g1", "--json") == 0 && a.cmd == CMD_STATUS && a.json, "status --json");
	CHECK(PARSE(&a, "status", "g1") == 0 && !a.json, "status");
	CHECK(PARSE(&a, "list") == 0 && a.cmd == CMD_LIST, "list");
	CHECK(PARSE(&a, "list", "x") == -1, "list takes nothing");
	CHECK(PARSE(&a, "frob") == -1 && strstr(a.error, "unknown command"), "unknown: %s", a.error);
	CHECK(PARSE(&a, "--help") == 0 && a.cmd == CMD_HELP, "--help");
	CHECK(PARSE(&a, "create", "--help") == 0 && a.cmd == CMD_HELP, "create --help");
	CHECK(cowctl_parse(1, (char *[]){ "cowctl", NULL }, &a) == -1, "no command");

	TEST("store commands");
	CHECK(PARSE(&a, "check", "s.cow") == 0 && a.cmd == CMD_CHECK && !strcmp(a.store, "s.cow") &&
	      !a.base, "check STORE: %s", a.error);
	CHECK(PARSE(&a, "check", "s.cow", "base.img") == 0 && !strcmp(a.base, "base.img"),
	      "check STORE BASE: %s", a.error);
	CHECK(PARSE(&a, "check", "a", "b", "c") == -1 && strstr(a.error, "too many"), "check: 3");
	CHECK(PARSE(&a, "check") == -1, "check needs a store");
	CHECK(PARSE(&a, "dump", "s.cow", "--json") == 0 && a.cmd == CMD_DUMP && a.json, "dump --json");
	CHECK(PARSE(&a, "info", "s.cow", "b", "--json") == 0 && a.cmd == CMD_INFO && a.json &&
	      !strcmp(a.store, "s.cow") && !strcmp(a.base, "b"), "info STORE BASE --json: %s", a.error);
	CHECK(PARSE(&a, "map", "s.cow", "--base-id", "L") == 0 && a.cmd == CMD_MAP &&
	      !strcmp(a.base_id, "L") && !a.base, "map STORE --base-id: %s", a.error);
	CHECK(PARSE(&a, "map", "a", "b", "c") == -1 && strstr(a.error, "too many"), "map: 3");
	CHECK(PARSE(&a, "info") == -1, "info needs a store");
	CHECK(PARSE(&a, "map", "s.cow", "--out", "x") == -1, "map takes no --out");
	CHECK(PARSE(&a, "check", "s.cow", "--json") == 0 && a.json, "check --json: %s", a.error);
	CHECK(PARSE(&a, "list", "--json") == 0 && a.cmd == CMD_LIST && a.json, "list --json: %s", a.error);
	CHECK(PARSE(&a, "merge", "s.cow", "--out", "new.img") == 0 && a.cmd == CMD_MERGE &&
	      !strcmp(a.out, "new.img") && !a.in_place, "merge --out: %s", a.error);
	CHECK(PARSE(&a, "merge", "s.cow", "b", "--in-place") == 0 && a.in_place && !a.out &&
	      !strcmp(a.base, "b"), "merge --in-place: %s", a.error);
	CHECK(PARSE(&a, "merge", "s.cow") == -1 && strstr(a.error, "--out"), "merge needs a target");
	CHECK(PARSE(&a, "merge", "s.cow", "--out", "x", "--in-place") == -1, "merge: not both");
	CHECK(PARSE(&a, "merge", "s.cow", "--in-place") == -1 && strstr(a.error, "name it"),
	      "merge --in-place names the base it writes: %s", a.error);
	CHECK(PARSE(&a, "merge", "s.cow", "--out") == -1, "--out needs a file");
	CHECK(PARSE(&a, "reset", "g1") == 0 && a.cmd == CMD_RESET && !strcmp(a.name, "g1"), "reset");
	CHECK(PARSE(&a, "reset", "a/b") == -1, "reset: bad name");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--read-only", "--base-ro") == 0 && a.read_only &&
	      a.base_ro, "create --read-only --base-ro: %s", a.error);
	CHECK(PARSE(&a, "check", "s", "--in-place") == -1, "--in-place is for merge");
	CHECK(PARSE(&a, "convert", "s.qcow2", "b", "--format", "packed", "--out", "n.cow") == 0 &&
	      a.cmd == CMD_CONVERT && !strcmp(a.store, "s.qcow2") && !strcmp(a.base, "b") &&
	      !strcmp(a.format, "packed") && !strcmp(a.out, "n.cow") && !a.chunk_given,
	      "convert: %s", a.error);
	CHECK(PARSE(&a, "convert", "s", "--format", "uml", "--out", "n", "--chunk", "4k") == 0 &&
	      a.chunk_given && a.chunk_bytes == 4096, "convert --chunk: %s", a.error);
	CHECK(PARSE(&a, "convert", "s", "--out", "n") == -1 && strstr(a.error, "--format"),
	      "convert needs a format");
	CHECK(PARSE(&a, "convert", "s", "--format", "uml") == -1 && strstr(a.error, "--out"),
	      "convert needs --out");
	CHECK(PARSE(&a, "convert", "s", "--format", "uml", "--out", "n", "--in-place") == -1,
	      "convert has no --in-place");
	CHECK(PARSE(&a, "check", "s.qcow2", "--repair", "--json") == 0 && a.repair && a.json,
	      "check --repair: %s", a.error);
	CHECK(PARSE(&a, "dump", "s.qcow2", "--repair") == -1, "--repair is for check");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--no-daemon") == 0 && a.no_daemon,
	      "create --no-daemon: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c") == 0 && !a.no_daemon, "a daemon by default");
	CHECK(PARSE(&a, "remove", "g1", "--no-daemon") == -1, "--no-daemon is for create");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--force") == 0 && a.force, "create --force: %s",
	      a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c") == 0 && !a.force, "no --force by default");
	CHECK(PARSE(&a, "reset", "g1", "--force") == -1, "--force is for create");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--ignore-base-mtime") == 0 && a.ignore_base_mtime,
	      "create --ignore-base-mtime: %s", a.error);
	CHECK(PARSE(&a, "merge", "s", "--out", "o", "--ignore-base-mtime") == 0 && a.ignore_base_mtime,
	      "merge --ignore-base-mtime: %s", a.error);
	CHECK(PARSE(&a, "remove", "g1", "--ignore-base-mtime") == -1, "not for remove");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--base-id", "gold-1") == 0 && a.base_id &&
	      !strcmp(a.base_id, "gold-1"), "create --base-id: %s", a.error);
	CHECK(PARSE(&a, "check", "s", "--base-id", "gold-1") == 0 && a.base_id, "check --base-id: %s",
	      a.error);
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--base-id", "") == -1, "an empty label");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--base-id",
		    "0123456789012345678901234567890123456789012345678901234567890123") == -1,
	      "a 64-byte label");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--base-id") == -1 && strstr(a.error, "label"),
	      "--base-id without a label: %s", a.error);
	CHECK(PARSE(&a, "status", "--base-id", "x") == -1, "not for status");

	TEST("options are whole words");
	CHECK(PARSE(&a, "merge", "s.cow", "--output", "x") == -1 && strstr(a.error, "unknown option"),
	      "--output is not --out: %s", a.error);
	CHECK(PARSE(&a, "merge", "s.cow", "--output=x") == -1, "--output=x is not --out");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--chunks", "16k") == -1, "--chunks is not --chunk");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--formats=uml") == -1, "--formats is not --format");
	CHECK(PARSE(&a, "create", "g1", "b", "c", "--json") == -1, "--json is not for create");
	CHECK(PARSE(&a, "merge", "s.cow", "--out=") == -1 && strstr(a.error, "file name"),
	      "--out= is empty: %s", a.error);
	CHECK(PARSE(&a, "create", "g1", "--", "-b", "c") == 0 && !strcmp(a.base, "-b"),
	      "-- ends the options: %s", a.error);
	CHECK(PARSE(&a, "status", "g1") == 0 && PARSE(&a, "status", "g2", "--json") == 0 &&
	      !strcmp(a.name, "g2") && a.json, "parsing twice starts afresh");
}

int main(void)
{
	test_sizes();
	test_names();
	test_commands();
	return check_done("test-cowctl-args");
}
