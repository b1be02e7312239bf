/* SPDX-License-Identifier: GPL-2.0-only */
/* cowctl convert: the same changes in a store of another format. */
#ifndef COWCTL_CONVERT_H
#define COWCTL_CONVERT_H

#include "cowctl-args.h"

int cmd_convert(const struct cowctl_args *a);

#endif
