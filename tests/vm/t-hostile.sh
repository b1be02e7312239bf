# A hostile control-device client: every malformed or out-of-range message
# is refused with its error code and counted, nothing crashes, and the
# group goes on serving.
. ./lib.sh

make_base base.img 8M 7
truncate -s 16M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
track hx
dmsetup create hx --table "0 16384 cow hx $B $C 64"
cow-hostile hx /dev/mapper/hx || fail "the hostile client found a message accepted that must not be"
[ "$(dm_status hx rejected)" -gt 20 ] || fail "refused messages were not counted"
[ "$(dm_status hx daemon)" = detached ] || fail "the client's close did not detach"
note "rejected: $(dm_status hx rejected)"
# The data written through the hostile client's MAP is there.
dd if=/dev/mapper/hx bs=4096 skip=$((2 * 64 / 8)) count=1 status=none | od -An -tx1 -N16 |
	has 'ab ab ab' || fail "the write served by the client is lost"
dmsetup remove hx
