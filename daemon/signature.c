// SPDX-License-Identifier: GPL-2.0-only
/* What else a blank-looking file or device holds: see signature.h. */
#include <blkid/blkid.h>
#include <errno.h>
#include <stdio.h>

#include "signature.h"

int foreign_signature(const char *path, char *what, size_t len)
{
	const char *type = NULL, *kind = NULL;
	blkid_probe pr = blkid_new_probe_from_filename(path);
	int r;

	if (!pr)
		return -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
	blkid_probe_enable_partitions(pr, 1);
	r = blkid_do_safeprobe(pr);
	if (r == 0) {
		if (!blkid_probe_lookup_value(pr, "TYPE", &type, NULL))
			blkid_probe_lookup_value(pr, "USAGE", &kind, NULL);
		else if (!blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL))
			kind = "partition table";
		snprintf(what, len, "%s %s", type ? type : "an unnamed", kind ? kind : "signature");
		r = 1;
	} else if (r == -2) {
		snprintf(what, len, "several conflicting signatures");
		r = 1;
	} else if (r == 1) {
		r = 0;
	} else {
		r = -EIO;
	}
	blkid_free_probe(pr);
	return r;
}
