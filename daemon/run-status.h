/* SPDX-License-Identifier: GPL-2.0-only */
/* What cowd publishes in RUN_DIR/IDENT.status, read by cowctl. */
#ifndef COW_RUN_STATUS_H
#define COW_RUN_STATUS_H

#include <stddef.h>

#include "keyval.h"

#define RUN_DIR "/run/dm-cow"

/* Fill @out from the group's status file: 1 if there is one, else 0. */
int run_status_read(const char *ident, const struct kv_field *fields, size_t n, void *out);

#endif
