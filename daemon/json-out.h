/* SPDX-License-Identifier: GPL-2.0-only */
/* cowctl's JSON output, through json-c: strings are always escaped. */
#ifndef COW_JSON_OUT_H
#define COW_JSON_OUT_H

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_OUTPUT_FLAGS (JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/*
 * Set once a command has begun its JSON answer on stdout: if it fails
 * before that, cowctl prints the error as JSON instead (see main()).
 */
extern int json_out_begun;

/* A command's JSON answer, @j, on stdout. */
static inline void json_out(struct json_object *j, int flags)
{
	json_out_begun = 1;
	puts(json_object_to_json_string_ext(j, flags));
}

static inline void json_add_u64(struct json_object *j, const char *key, uint64_t v)
{
	json_object_object_add(j, key, json_object_new_uint64(v));
}

/* @s as a JSON string literal, escaped, on @f. */
static inline void json_print_string(FILE *f, const char *s)
{
	struct json_object *o = json_object_new_string(s);

	fputs(json_object_to_json_string_ext(o, JSON_OUTPUT_FLAGS), f);
	json_object_put(o);
}

#endif
