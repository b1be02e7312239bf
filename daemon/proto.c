// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

/* The version the kernel module speaks (its HELLO's). */
static uint16_t version = COW_PROTO_VERSION;

int cow_msg_use_version(uint16_t v)
{
	if (v != COW_PROTO_VERSION && v != COW_PROTO_OLDEST)
		return -EPROTO;
	version = v;
	return 0;
}

static struct cow_msg msg(uint16_t type)
{
	struct cow_msg m;

	memset(&m, 0, sizeof(m));
	m.version = version;
	m.type = type;
	return m;
}

struct cow_msg cow_msg_attach(uint64_t phase)
{
	struct cow_msg m = msg(COW_MSG_ATTACH);

	m.arg[0] = phase;
	return m;
}

struct cow_msg cow_msg_map(uint64_t chunk, uint64_t sector, int data_valid)
{
	struct cow_msg m = msg(COW_MSG_MAP);

	m.chunk = chunk;
	m.sector = sector;
	m.flags = data_valid ? COW_MAP_DATA_VALID : 0;
	return m;
}

struct cow_msg cow_msg_load(uint64_t chunk, uint64_t sector)
{
	struct cow_msg m = msg(COW_MSG_LOAD);

	m.chunk = chunk;
	m.sector = sector;
	return m;
}

struct cow_msg cow_msg_fail(uint64_t chunk, int error)
{
	struct cow_msg m = msg(COW_MSG_FAIL);

	m.chunk = chunk;
	m.error = error < 0 ? error : -EIO;
	return m;
}

struct cow_msg cow_msg_committed(uint64_t seq)
{
	struct cow_msg m = msg(COW_MSG_COMMITTED);

	m.seq = seq;
	return m;
}

struct cow_msg cow_msg_commit_failed(uint64_t seq, int error)
{
	struct cow_msg m = msg(COW_MSG_COMMIT_FAILED);

	m.seq = seq;
	m.error = error < 0 ? error : -EIO;
	return m;
}

struct cow_msg cow_msg_grant(uint64_t sector, uint64_t count)
{
	struct cow_msg m = msg(COW_MSG_GRANT);

	m.sector = sector;
	m.arg[0] = count;
	return m;
}

struct cow_msg cow_msg_resized(uint64_t sectors, int error)
{
	struct cow_msg m = msg(COW_MSG_RESIZED);

	m.sector = sectors;
	m.error = error;
	return m;
}

struct cow_msg cow_msg_drop(uint64_t first_chunk, uint64_t count)
{
	struct cow_msg m = msg(COW_MSG_DROP);

	m.chunk = first_chunk;
	m.arg[0] = count;
	return m;
}

int cow_msg_check_incoming(const struct cow_msg *m, const struct cow_geometry *g, uint64_t phase,
			   const char **why)
{
	if (m->version != version) {
		*why = "protocol version mismatch (module and cowd from different releases?)";
		return -EPROTO;
	}
	switch (m->type) {
	case COW_MSG_HELLO:
	case COW_MSG_COMMIT:
		return 0;
	case COW_MSG_RESIZE:
		if (!m->sector || m->sector > COW_MAX_DEV_SECTORS ||
		    m->chunk != (m->sector + g->chunk_sectors - 1) / g->chunk_sectors) {
			*why = "RESIZE to no size, or with a chunk count that does not match it";
			return -EINVAL;
		}
		return 0;
	case COW_MSG_FAULT:
	case COW_MSG_READY:
	case COW_MSG_FILLING:
	case COW_MSG_COPY_FAILED:
		break;
	default:
		*why = "unknown message type from the kernel";
		return -EINVAL;
	}
	if (m->chunk >= g->nr_chunks) {
		*why = "chunk beyond the device";
		return -EINVAL;
	}
	if (m->type == COW_MSG_COPY_FAILED && (m->error >= 0 || m->error < -4095)) {
		*why = "COPY_FAILED without a negative errno";
		return -EINVAL;
	}
	if (m->type != COW_MSG_FAULT &&
	    (m->sector < phase || (m->sector - phase) % g->chunk_sectors)) {
		*why = "CoW location not aligned to the store's chunks";
		return -EINVAL;
	}
	return 0;
}

int cow_msg_hello_decode(const struct cow_msg *m, struct cow_geometry *g)
{
	uint64_t cs = m->arg[0];

	if (m->type != COW_MSG_HELLO || cs < 8 || cs > (1U << 21) || (cs & (cs - 1)))
		return -EINVAL;
	/* The device may be larger than the base (grown), never smaller. */
	if (m->chunk < (m->sector + cs - 1) / cs)
		return -EINVAL;
	g->nr_chunks = m->chunk;
	g->base_sectors = m->sector;
	g->chunk_sectors = (uint32_t)cs;
	g->cow_sectors = m->arg[1];
	g->base_dev = (uint32_t)(m->arg[2] >> 32);
	g->cow_dev = (uint32_t)m->arg[2];
	g->md_dev = (uint32_t)m->seq;
	return 0;
}

const char *cow_msg_type_name(uint16_t type)
{
	switch (type) {
	case COW_MSG_HELLO: return "HELLO";
	case COW_MSG_FAULT: return "FAULT";
	case COW_MSG_READY: return "READY";
	case COW_MSG_COMMIT: return "COMMIT";
	case COW_MSG_COPY_FAILED: return "COPY_FAILED";
	case COW_MSG_FILLING: return "FILLING";
	case COW_MSG_RESIZE: return "RESIZE";
	case COW_MSG_RESIZED: return "RESIZED";
	case COW_MSG_COMMIT_FAILED: return "COMMIT_FAILED";
	case COW_MSG_ATTACH: return "ATTACH";
	case COW_MSG_MAP: return "MAP";
	case COW_MSG_COMMITTED: return "COMMITTED";
	case COW_MSG_LOAD: return "LOAD";
	case COW_MSG_FAIL: return "FAIL";
	case COW_MSG_DROP: return "DROP";
	case COW_MSG_GRANT: return "GRANT";
	default: return "UNKNOWN";
	}
}

int cow_msg_describe(const struct cow_msg *m, char *buf, size_t len)
{
	return snprintf(buf, len, "%s v%u flags=%#x error=%d seq=%llu chunk=%llu sector=%llu",
			cow_msg_type_name(m->type), m->version, m->flags, m->error,
			(unsigned long long)m->seq, (unsigned long long)m->chunk,
			(unsigned long long)m->sector);
}
