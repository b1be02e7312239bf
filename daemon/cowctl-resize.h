/* SPDX-License-Identifier: GPL-2.0-only */
/* cowctl resize: grow a device online. */
#ifndef COWCTL_RESIZE_H
#define COWCTL_RESIZE_H

#include "cowctl-args.h"

/* Exit status: 0 grown (or already that size), 1 failed. */
int cmd_resize(const struct cowctl_args *a);

#endif
