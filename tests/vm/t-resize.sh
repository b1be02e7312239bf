# cowctl resize grows a device online past its base: cowd grows the qcow2
# store (in place, and with its L1 table moved) or the packed one (its
# header) and loads a larger table;
# past the base's end the device reads zeros until written, including
# the rest of the base's partial last chunk when that chunk was written
# before the resize.  ext4 grows into the new space with resize2fs while
# mounted, and everything reads back after the device is removed and
# made again (which takes the store's size); qemu-img check and info
# agree, qemu-img compare matches a model.  A resize asked while no cowd
# reads is done by the next one.  A store that cannot grow (uml) is
# refused with the reason and keeps working; shrinking is refused.
. ./lib.sh

command -v resize2fs >/dev/null || fail "resize2fs is missing (e2fsprogs)"

# Raw: a base of 1 MiB + 12 KiB (its last 64 KiB chunk is partial).
make_base raw.img $((1024 * 1024 + 12288)) 5
raw_sum=$(sha raw.img)
head -c 4096 /dev/urandom >p.bin
head -c 65536 /dev/urandom >q.bin
for fmt in qcow2 packed; do
	dev=r-$fmt
	cp raw.img model.img
	track $dev
	cowctl create $dev raw.img r.$fmt --format $fmt >/dev/null
	# The partial last chunk, written before the resize: its location's
	# tail must read as zeros once the device covers it.
	dd if=p.bin of=/dev/mapper/$dev bs=4096 seek=257 oflag=direct conv=notrunc status=none
	dd if=p.bin of=model.img bs=4096 seek=257 conv=notrunc status=none
	cowctl resize $dev 0 2>err.txt && fail "$fmt: resize to 0 accepted"
	cowctl resize $dev 512k 2>err.txt && fail "$fmt: a shrink was accepted"
	has "never shrink" err.txt || fail "the refused shrink does not say why: $(cat err.txt)"
	cowctl resize $dev 3M >out.txt 2>&1 || fail "$fmt: resize 3M: $(cat out.txt)"
	[ "$(blockdev --getsize64 /dev/mapper/$dev)" = $((3 * 1024 * 1024)) ] ||
		fail "$fmt: after resize the device has $(blockdev --getsize64 /dev/mapper/$dev) bytes, not 3 MiB"
	truncate -s 3M model.img
	cmp /dev/mapper/$dev model.img || fail "$fmt: the grown device does not read as the base, then zeros"
	# Writes past the base's end, and across it.
	for at in 300 254; do
		dd if=q.bin of=/dev/mapper/$dev bs=4096 seek=$at oflag=direct conv=notrunc status=none
		dd if=q.bin of=model.img bs=4096 seek=$at conv=notrunc status=none
	done
	cmp /dev/mapper/$dev model.img || fail "$fmt: writes past the base's end do not read back"
	cowctl remove $dev
	cowctl check r.$fmt raw.img >check.txt || fail "$fmt: the grown store does not check: $(cat check.txt)"
	cowctl info r.$fmt raw.img >info.txt
	has "virtual size: 3145728 bytes (grown" info.txt || fail "$fmt: cowctl info: $(grep virtual info.txt)"
	[ $fmt != qcow2 ] || qemu-img compare -q -f qcow2 -F raw r.qcow2 model.img ||
		fail "qemu-img compare of the grown image with the model"
	# Converted to the other format and merged, it is all there.
	other=$([ $fmt = qcow2 ] && echo packed || echo qcow2)
	rm -f conv.$other merged.img
	cowctl convert r.$fmt raw.img --format $other --out conv.$other >/dev/null ||
		fail "$fmt: convert to $other"
	cowctl merge conv.$other raw.img --out merged.img >/dev/null || fail "$fmt: merge of the converted store"
	cmp merged.img model.img || fail "$fmt: converted to $other and merged, it reads differently"
	# Made again, the device takes the store's size.
	cowctl create $dev raw.img r.$fmt >/dev/null
	[ "$(blockdev --getsize64 /dev/mapper/$dev)" = $((3 * 1024 * 1024)) ] ||
		fail "$fmt: made again, the device has $(blockdev --getsize64 /dev/mapper/$dev) bytes"
	cmp /dev/mapper/$dev model.img || fail "$fmt: made again, it reads differently"
	[ $fmt = qcow2 ] || { cowctl remove $dev; continue; }
	# Past what the L1 table's cluster holds (8192 L2 tables of 512 MiB):
	# the table moves; a write at 4.5 TiB reads back.
	cowctl resize $dev +5T >out.txt 2>&1 || fail "resize +5T: $(cat out.txt)"
	dd if=q.bin of=/dev/mapper/$dev bs=4096 seek=$((9 << 27)) oflag=direct status=none
	dd if=/dev/mapper/$dev bs=4096 skip=$((9 << 27)) count=16 iflag=direct status=none | cmp - q.bin ||
		fail "a write at 4.5 TiB does not read back"
	[ "$(dd if=/dev/mapper/$dev bs=4096 skip=$(((9 << 27) - 16)) count=16 iflag=direct status=none |
		tr -d '\0' | wc -c)" = 0 ] || fail "the grown space does not read as zeros"
	cowctl remove $dev
	qemu-img check -q r.qcow2 || fail "qemu-img check after the resizes"
	qemu-img info r.qcow2 | has "virtual size: 5 TiB" || fail "qemu-img info: $(qemu-img info r.qcow2 | grep virtual)"
	qemu-io -f qcow2 -c "read -q -P 0 4T 64k" r.qcow2 >/dev/null || fail "qemu-io: zeros at 4 TiB"
	cowctl create $dev raw.img r.qcow2 >/dev/null
	[ "$(blockdev --getsize64 /dev/mapper/$dev)" = $(((5 << 40) + 3 * 1024 * 1024)) ] ||
		fail "made again, the device has $(blockdev --getsize64 /dev/mapper/$dev) bytes"
	head -c $((3 * 1024 * 1024)) /dev/mapper/$dev | cmp - model.img || fail "made again, it reads differently"
	cowctl remove $dev
done
[ "$(sha raw.img)" = "$raw_sum" ] || fail "the base changed"
note "raw, qcow2 and packed: 1 MiB + 12 KiB base grown to 3 MiB: zeros past the base, writes read back, check clean, made again at its size; qcow2 then by 5 TiB (L1 moved), qemu-img agrees"

# On a block device whose blocks hold old data, the kernel writes the
# zeros: a 4 KiB write into a chunk past the base (a merged fill, of
# zeroed pages) and into the base's partial last chunk (a copy of its
# base part and dm-io zero writes after it) read as zeros around it.
head -c 8M /dev/urandom >junk.img
# (blank where the header goes, as a store must be to be formatted)
dd if=/dev/zero of=junk.img bs=64k count=1 conv=notrunc status=none
J=$(loop junk.img)
cp raw.img jmodel.img
track j
cowctl create j raw.img "$J" --format qcow2 --force >/dev/null
cowctl resize j 2M >out.txt 2>&1 || fail "resize j 2M: $(cat out.txt)"
truncate -s 2M jmodel.img
# Free pages full of old data too, for the fills' pages to come from.
head -c 32M /dev/urandom >/dev/shm/dirty
rm /dev/shm/dirty
for at in 300 258 500; do	# (4 KiB blocks: past the base, its last chunk, past again)
	dd if=p.bin of=/dev/mapper/j bs=4096 seek=$at oflag=direct conv=notrunc status=none
	dd if=p.bin of=jmodel.img bs=4096 seek=$at conv=notrunc status=none
done
cmp /dev/mapper/j jmodel.img || fail "old data of the block device shows through past the base"
note "qcow2 on a block device of old data, grown: chunks past the base and the base's last read zeros around writes"

# A resize asked while no cowd reads (stopped, then killed) reaches the
# next one, which grows the store and the device.
pid=$(cat /run/dm-cow/j.pid)
kill -STOP "$pid"
dmsetup message j 0 resize 6144
restart_cowd j
grown() { [ "$(blockdev --getsz /dev/mapper/j)" = 6144 ]; }
wait_until "the new cowd growing the device to 3 MiB" grown
has "the store grew to 3145728 bytes" /run/dm-cow/j.log || fail "the new cowd's log does not say it grew the store"
truncate -s 3M jmodel.img
cmp /dev/mapper/j jmodel.img >cmp.txt 2>&1 ||
	fail "after the resize by a new cowd the device reads differently: $(head -n 2 cmp.txt)"
dmsetup message j 0 resize 4096 2>/dev/null && fail "the kernel took a resize that shrinks"
note "a resize asked while cowd was stopped, then killed: done by the next cowd"

# A cowd that grew the store, was answered, and stopped before it loaded
# the larger table (here: another table was loaded, so its reload waited):
# the next one loads it.
dmsetup table j | dmsetup load j
n0=$(grep -c "no reload now" /run/dm-cow/j.log || true)
dmsetup message j 0 resize 8192
waited() { [ "$(grep -c "no reload now" /run/dm-cow/j.log)" -gt "$n0" ]; }
wait_until "cowd growing the store and waiting to reload" waited
pid=$(cat /run/dm-cow/j.pid)
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
dmsetup clear j
[ "$(blockdev --getsz /dev/mapper/j)" = 6144 ] || fail "the device grew before a table of its new size was loaded"
cowd --pidfile /run/dm-cow/j.pid --log-file /run/dm-cow/j.log j
grown4() { [ "$(blockdev --getsz /dev/mapper/j)" = 8192 ]; }
wait_until "the next cowd loading the grown table" grown4
truncate -s 4M jmodel.img
cmp /dev/mapper/j jmodel.img || fail "after the resize finished by a new cowd the device reads differently"
cowctl remove j
note "a resize whose cowd stopped before it loaded the table: finished by the next cowd"

# ext4, grown while mounted (not on the debug kernel, where it takes
# minutes: the kernel's paths are those of the raw part above).
case "$(uname -r)" in
*dmcow-debug*) note "ext4: skipped on the debug kernel" ;;
*)
	truncate -s 32M base.img
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 base.img
	mkdir -p mnt
	mount -o loop base.img mnt
	head -c 4M /dev/urandom >mnt/kept
	umount mnt
	base_sum=$(sha base.img)
	track g
	cowctl create g base.img g.qcow2 --format qcow2 >/dev/null
	mount /dev/mapper/g mnt
	head -c 8M /dev/urandom >mnt/a
	sync
	size0=$(df -k --output=size mnt | tail -n1)
	cowctl resize g +32M >out.txt 2>&1 || fail "resize g +32M: $(cat out.txt)"
	resize2fs /dev/mapper/g >rs.txt 2>&1 || fail "resize2fs: $(cat rs.txt)"
	[ "$(df -k --output=size mnt | tail -n1)" -gt $((size0 + 30000)) ] ||
		fail "ext4 did not grow by 32 MiB: $size0 KiB before, $(df -k --output=size mnt | tail -n1) after"
	head -c 36M /dev/urandom >mnt/b
	sync
	sums="$(sha mnt/kept) $(sha mnt/a) $(sha mnt/b)"
	umount mnt
	e2fsck -fn /dev/mapper/g >fsck.txt 2>&1 || fail "e2fsck after growing: $(tail -n 5 fsck.txt)"
	cowctl remove g
	qemu-img check -q g.qcow2 || fail "qemu-img check of the grown image"
	cowctl create g base.img g.qcow2 >/dev/null
	mount /dev/mapper/g mnt
	[ "$(sha mnt/kept) $(sha mnt/a) $(sha mnt/b)" = "$sums" ] || fail "files read differently after re-creating"
	umount mnt
	cowctl remove g
	[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
	note "ext4: 32 MiB grown by 32 MiB while mounted, resize2fs, a 36 MiB file past the base: fsck clean, same after re-creating"
	;;
esac

# A uml store cannot grow: refused, with the reason, and it still works.
track u
cowctl create u raw.img u.cow --format uml >/dev/null
cowctl resize u +1M >out.txt 2>&1 && fail "a uml store grew"
has "cowd could not grow" out.txt || fail "the refusal does not say why: $(cat out.txt)"
has "cannot grow" /run/dm-cow/u.log || fail "cowd's log does not say why"
[ "$(blockdev --getsize64 /dev/mapper/u)" = $((1024 * 1024 + 12288)) ] || fail "the uml device changed size"
dd if=p.bin of=/dev/mapper/u bs=4096 seek=3 oflag=direct conv=notrunc status=none
dd if=/dev/mapper/u bs=4096 skip=3 count=1 iflag=direct status=none | cmp - p.bin ||
	fail "the uml device stopped working after the refused resize"
cowctl remove u
note "uml: resize refused ($(head -n1 out.txt | cut -c1-100)); the device works on"
