# Discards give space back: ext4 over dm-cow, on a store of each format (a
# file, through a loop device): a file written through the kernel's remap
# tree and one written and then turned into linear segments by a reload
# are deleted, and fstrim makes the store use less disk, by most of what
# the files took.  Files kept read the same before and after, e2fsck finds
# the filesystem clean, the store checks clean, the base never changes.
# A discard that starts and ends inside chunks, over several mapped ones,
# zeroes exactly its range (the kernel cuts it at chunk boundaries);
# discards of chunks never written are done at once (the base's data stays
# a valid answer); a read-only device takes none.
. ./lib.sh

command -v fstrim >/dev/null || fail "fstrim is missing (util-linux)"
truncate -s 64M base.img
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 base.img
mkdir -p mnt
mount -o loop base.img mnt
head -c 3M /dev/urandom >mnt/kept
umount mnt
base_sum=$(sha base.img)
kib() { du -k "$1" | cut -f1; }

for fmt in packed uml qcow2; do
	dev=d-$fmt
	track $dev
	cowctl create $dev base.img s.$fmt --format $fmt >/dev/null
	mount /dev/mapper/$dev mnt
	kept=$(sha mnt/kept)
	# A: made linear segments by a reload; B: in the kernel's tree.
	head -c 12M /dev/urandom >mnt/a
	sync
	# (12 MiB: 192 chunks, now linear segments)
	reloaded() { [ "$(dm_status $dev dropped)" -ge 192 ]; }
	wait_until "$fmt: a reload making file a linear" reloaded
	# (a cowd that does not reload: b stays in the tree)
	pid=$(cat /run/dm-cow/$dev.pid)
	kill $pid
	wait_until "$fmt: cowd exiting" gone $pid
	cowd --no-reload --pidfile /run/dm-cow/$dev.pid --log-file /run/dm-cow/$dev.log $dev
	head -c 12M /dev/urandom >mnt/b
	sync
	[ "$(dm_status $dev mapped)" -ge 192 ] || fail "$fmt: file b is not in the kernel's tree"
	before=$(kib s.$fmt)
	rm mnt/a mnt/b
	sync	# (ext4 trims blocks only once the transaction that freed them commits)
	fstrim mnt
	sync
	after=$(kib s.$fmt)
	[ $((before - after)) -ge 16384 ] ||
		fail "$fmt: fstrim gave back $((before - after)) KiB of the 24 MiB deleted (store: $before -> $after KiB)"
	[ "$(sha mnt/kept)" = "$kept" ] || fail "$fmt: a file kept reads differently after fstrim"
	umount mnt
	e2fsck -fn /dev/mapper/$dev >fsck.txt 2>&1 || fail "$fmt: e2fsck after fstrim: $(tail -n 5 fsck.txt)"
	cowctl remove $dev
	cowctl check s.$fmt base.img >check.txt || fail "$fmt: the store does not check clean: $(cat check.txt)"
	note "$fmt: fstrim after deleting 24 MiB: store $before -> $after KiB; kept file, fsck, check clean"
done

# Across chunks, unaligned; and chunks never written.
make_base pbase.img 8M 4
track ro
cowctl create ro pbase.img s.ro --format packed >/dev/null
cp pbase.img model.img
# 20 chunks of new data from 32 KiB on: chunks 0-20 mapped (0 and 20 in part).
head -c 1310720 /dev/urandom >w.bin
dd if=w.bin of=/dev/mapper/ro bs=32k seek=1 oflag=direct conv=notrunc status=none
dd if=w.bin of=model.img bs=32k seek=1 conv=notrunc status=none
before=$(kib s.ro)
# 40 KiB into chunk 0 to 20 KiB into chunk 19: zeros there, data around.
blkdiscard -o 40960 -l $((19 * 65536 + 20480 - 40960)) /dev/mapper/ro || fail "an unaligned discard failed"
dd if=/dev/zero of=model.img bs=4k seek=10 count=$(((19 * 65536 + 20480 - 40960) / 4096)) conv=notrunc status=none
dev_cmp /dev/mapper/ro model.img || fail "after an unaligned discard the device is not data, zeros, data"
after=$(kib s.ro)
[ $((before - after)) -ge 1024 ] || fail "the unaligned discard gave back $((before - after)) KiB, want at least 1024"
# Chunks 40-59 never written: nothing changes.
blkdiscard -o $((40 * 65536)) -l $((20 * 65536)) /dev/mapper/ro || fail "a discard of unwritten chunks failed"
dev_cmp /dev/mapper/ro model.img || fail "unwritten chunks changed after a discard"
cowctl remove ro
cowctl check s.ro pbase.img >/dev/null || fail "the store does not check clean after discards"
note "unaligned discard over 20 chunks: zeros exactly there, $((before - after)) KiB back; unwritten chunks unchanged"
cowctl create ro base.img s.packed --read-only >/dev/null
blkdiscard -o 0 -l 1M /dev/mapper/ro 2>/dev/null && fail "a read-only device took a discard"
cowctl remove ro
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
note "unwritten chunks: discard done, data unchanged; read-only device: discard refused"
