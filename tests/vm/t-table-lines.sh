# The original table-line form, a device shorter than one chunk, a table of
# several cow targets sharing one group, and every bad line refused with its
# reason in the kernel log (a group's CoW device shared with another group
# among them).
. ./lib.sh

make_base base.img 300k 5		# 600 sectors: less than one 1024-sector chunk
base_sum=$(sha base.img)
truncate -s 4M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)

# The form of the original proposal.
track orig
dmsetup create orig --table "0 100 cow orig $B $C 1024"
cowd -f orig 2>cowd.log &
track_pid $!
wait_attached orig
cp base.img model.img
cow-pattern random /dev/mapper/orig model.img 30 3 1 8192
head -c $((100 * 512)) model.img | cmp - /dev/mapper/orig || fail "original form: data differs"
[ "$(mapped_total orig)" -eq 1 ] || fail "one partial chunk should be mapped"
dmsetup remove orig
wait
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
note "original form and a partial chunk: ok"

# Bad lines.
truncate -s 4M other.img
O=$(loop other.img)
track held
dmsetup create held --table "0 64 cow held $B $C 8"
# bad REASON TABLE: TABLE (one line per target) is refused, and the kernel
# log says why (REASON: a grep pattern).
bad() {
	local reason=$1 table=$2 before
	before=$(dmesg | wc -l)
	if printf '%s\n' "$table" | dmsetup create bad 2>dmsetup.err; then
		track bad
		fail "accepted: '$(echo "$table" | paste -sd';')'"
	fi
	dmesg | tail -n +"$((before + 1))" | has "$reason" ||
		fail "'$table' refused without the reason '$reason' in the kernel log"
	note "refused ($(tail -n1 dmsetup.err | sed 's/^device-mapper: //')): $(echo "$table" | paste -sd';') -> $reason"
}
bad "Not enough arguments" "0 100 cow"
bad "Not enough arguments" "0 100 cow x $B $C"
bad "Invalid number of feature arguments" "0 100 cow x $B $C 8 zz"
bad "Feature argument count does not match" "0 100 cow x $B $C 8 1"
bad "Feature argument count does not match" "0 100 cow x $B $C 8 0 extra"
bad "Unknown feature argument" "0 100 cow x $B $C 8 1 frobnicate"
bad "Invalid chunk size" "0 100 cow x $B $C 12"
bad "Invalid chunk size" "0 100 cow x $B $C 4"
bad "Invalid chunk size" "0 100 cow x $B $C abc"
bad "Invalid chunk size" "0 100 cow x $B $C -8"
bad "Invalid chunk size" "0 100 cow x $B $C 4194304"
bad "Invalid ident" "0 100 cow .hidden $B $C 8"
bad "Invalid ident" "0 100 cow a/b $B $C 8"
bad "Cannot open the base device" "0 100 cow x /dev/nonexistent $C 8"
bad "Cannot open the CoW device" "0 100 cow x $B /dev/nonexistent 8"
bad "must differ" "0 100 cow x $C $C 8"
bad "must differ" "0 100 cow x $C $(cat "/sys/class/block/${C##*/}/dev") 8"	# the same, as MAJ:MIN
bad "Ident already in use" "0 100 cow held $B $O 8"
bad "Ident already in use" "0 100 cow held $B $C 16"
# One group's store is nobody else's, nor anybody's base; a base is shared.
truncate -s 4M ob.img
truncate -s 4M free.img
OB=$(loop ob.img)
F=$(loop free.img)
track held2
dmsetup create held2 --table "0 64 cow held2 $OB $O 8"
bad "CoW device is in use by another group" "0 100 cow x $B $C 8"
bad "CoW device is another group's base" "0 64 cow x $B $OB 8"
bad "base is another group's CoW device" "0 100 cow x $C $F 8"
dmsetup remove held2
# A disk and its partitions (an MBR with two, made here): a disk overlaps
# each of its partitions, two partitions of it do not.  The block layer's
# claims refuse a disk where a partition of it is held (and the reverse),
# across dm devices too: the same reasons as above, told as a device that
# cannot be opened.
python3 -c '
import struct, sys
mbr = bytearray(512)
for i, (start, count) in enumerate(((2048, 12288), (14336, 16384))):
    mbr[446 + 16 * i:462 + 16 * i] = struct.pack("<B3sB3sII", 0, bytes(3), 0x83, bytes(3), start, count)
mbr[510:512] = b"\x55\xaa"
f = open(sys.argv[1], "wb"); f.truncate(16 << 20); f.write(mbr)' disk.img
D=$(losetup -f --show -P disk.img)
wait_until "the partitions of $D" test -b "${D}p2"
bad "Cannot open the base device" "0 100 cow x $D ${D}p1 8"
bad "Cannot open the base device" "0 100 cow x ${D}p2 $D 8"
track pb
dmsetup create pb --table "0 100 cow pb $D $F 8"
bad "Cannot open the CoW device" "0 100 cow x $B ${D}p1 8"
dmsetup remove pb
track parts
dmsetup create parts --table "0 100 cow parts ${D}p1 ${D}p2 8" || fail "two partitions of one disk were refused"
bad "Cannot open the CoW device" "0 100 cow x $B $D 8"
bad "Cannot open the base device" "0 100 cow x $D $F 8"
dmsetup remove parts
dmsetup remove held

# Several targets, one group: one control device, shared counters, I/O
# across the target boundary.  A fresh store: the one above holds data.
truncate -s 4M cow2.img
C2=$(loop cow2.img)
track multi
printf '0 64 cow mg %s %s 32\n64 536 cow mg %s %s 32\n' "$B" "$C2" "$B" "$C2" |
	dmsetup create multi
[ -c /dev/dm-cow/mg ] || fail "no control device for the group"
[ "$(ls /dev/dm-cow | grep -c '^mg$')" -eq 1 ] || fail "more than one control device"
cowd -f --no-reload mg 2>cowd2.log &
track_pid $!
wait_attached multi
cp base.img model.img
cow-pattern random /dev/mapper/multi model.img 40 4 1 16384
cmp /dev/mapper/multi model.img || fail "multi-target table: data differs"
s1=$(dmsetup status multi | sed -n 1p | cut -d' ' -f4-)
s2=$(dmsetup status multi | sed -n 2p | cut -d' ' -f4-)
[ "$s1" = "$s2" ] || fail "targets of one group show different counters: $s1 / $s2"
dmsetup remove multi
wait
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"

# A cow target must start on a chunk boundary (device sector S is base
# sector S, chunks are copied whole): here a linear target serves sectors
# 0-7 of chunk 0 and the cow target would serve, and copy, the rest.
bad 'cow: .*\(start\|begin\|align\).*chunk\|cow: .*chunk.*\(start\|begin\|align\)' \
	"$(printf '0 8 linear %s 0\n8 592 cow x %s %s 128' "$O" "$B" "$C")"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"

# A base that grew under a live group: a table reaching past the size the
# group started with is refused (only cowctl resize grows a device: its
# daemon must grow the store first), one within it still loads.
make_base grow.img 300k 6
G=$(loop grow.img)
truncate -s 4M cow3.img
C3=$(loop cow3.img)
track grow
dmsetup create grow --table "0 600 cow gw $G $C3 8"
truncate -s 400k grow.img
losetup -c "$G"
[ "$(blockdev --getsz "$G")" = 800 ] || fail "the loop device did not grow"
before=$(dmesg | wc -l)
dmsetup load grow --table "0 800 cow gw $G $C3 8" 2>/dev/null &&
	fail "a table past the base's size at the group's start was accepted"
dmesg | tail -n +"$((before + 1))" | has "beyond the device's size" ||
	fail "the refusal of a grown base does not say why"
dmsetup load grow --table "0 600 cow gw $G $C3 8" || fail "a table within the old size was refused"
dmsetup resume grow
note "a table past a base that grew under its group: refused"
dmsetup remove grow
