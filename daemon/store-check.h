/* SPDX-License-Identifier: GPL-2.0-only */
/* Offline consistency checks of a store (cowctl check). */
#ifndef COW_STORE_CHECK_H
#define COW_STORE_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "offline.h"

enum check_result {
	CHECK_CLEAN = 0,
	CHECK_LEAKS = 1,	/* consistent, but space is lost */
	CHECK_CORRUPT = 2,
};

struct check_report {
	uint64_t mapped;	/* chunks the store maps */
	uint64_t problems;
	char first[512];	/* the first problem found, or the leak */
};

/*
 * The generic checks (every mapping is a chunk of the base, at a CoW
 * location inside the store, in the store's phase, used by one chunk only,
 * in chunk order), then the plugin's own check().
 */
enum check_result store_check(struct offline_store *o, struct check_report *rep);

#endif
