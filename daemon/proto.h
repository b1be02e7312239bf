/* SPDX-License-Identifier: GPL-2.0-only */
/* Building and checking control-device messages (include/dm-cow-proto.h). */
#ifndef COW_PROTO_CODEC_H
#define COW_PROTO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "dm-cow-proto.h"

struct cow_geometry {
	uint64_t nr_chunks;	/* of the device: more than the base's if grown */
	uint64_t base_sectors;
	uint32_t chunk_sectors;
	uint64_t cow_sectors;
	uint32_t base_dev; /* new_encode_dev() form */
	uint32_t cow_dev;
	uint32_t md_dev;   /* the dm device whose table holds the group */
};

struct cow_msg cow_msg_attach(uint64_t phase);
struct cow_msg cow_msg_map(uint64_t chunk, uint64_t sector, int data_valid);
struct cow_msg cow_msg_load(uint64_t chunk, uint64_t sector);
struct cow_msg cow_msg_fail(uint64_t chunk, int error);
struct cow_msg cow_msg_committed(uint64_t seq);
struct cow_msg cow_msg_commit_failed(uint64_t seq, int error);
/*
 * The oldest module cowd still serves: version 3, without GRANT (a cowd
 * upgraded while the old module stays loaded, until the next reboot).
 */
#define COW_PROTO_OLDEST 3
/* Speak @v, the version of the kernel's HELLO: 0, or -EPROTO if unknown. */
int cow_msg_use_version(uint16_t v);
struct cow_msg cow_msg_grant(uint64_t sector, uint64_t count);
struct cow_msg cow_msg_drop(uint64_t first_chunk, uint64_t count);
/* The store holds @sectors now (error 0), or could not grow (error < 0). */
struct cow_msg cow_msg_resized(uint64_t sectors, int error);

/*
 * Check a message read from the kernel: 0 if it is well formed, else a
 * negative errno and a reason in @why.
 */
/*
 * A message from the kernel: -EPROTO if it speaks another protocol (fatal),
 * -EINVAL if it is of a type the kernel never sends or names a chunk or a
 * location outside the geometry and the store's data phase (skip it).
 */
int cow_msg_check_incoming(const struct cow_msg *m, const struct cow_geometry *g, uint64_t phase,
			   const char **why);

/* Decode a HELLO; returns -EINVAL if @m is not a sound one. */
int cow_msg_hello_decode(const struct cow_msg *m, struct cow_geometry *g);

/* One-line description for logs. */
const char *cow_msg_type_name(uint16_t type);
int cow_msg_describe(const struct cow_msg *m, char *buf, size_t len);

#endif
