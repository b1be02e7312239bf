/* SPDX-License-Identifier: GPL-2.0-only */
/* cowctl's offline inspection: info (what a store is), map (its extents). */
#ifndef COWCTL_INSPECT_H
#define COWCTL_INSPECT_H

#include "cowctl-args.h"

int cmd_info(const struct cowctl_args *a);
int cmd_map(const struct cowctl_args *a);

#endif
