/* SPDX-License-Identifier: GPL-2.0-only */
/* What else a blank-looking file or device holds, as libblkid sees it. */
#ifndef COW_SIGNATURE_H
#define COW_SIGNATURE_H

#include <stddef.h>

/*
 * 1 if @path holds a filesystem, RAID, LVM or partition-table signature
 * (what says which, e.g. "iso9660 filesystem"), 0 if none, or a negative
 * errno.  Signatures far from the start (btrfs, iso9660, MD at the end)
 * are found too: a first 4 KiB of zeros does not make a device blank.
 */
int foreign_signature(const char *path, char *what, size_t len);

#endif
