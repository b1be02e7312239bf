# A plugin that cannot record one chunk (tests/plugins/flaky.c: packed,
# with mark() failing for chunk 7) fails that chunk's durability, never
# the daemon: the write itself completes and reads back, flushes fail while
# the chunk is unrecorded (the group says "failing"), cowd keeps serving
# other chunks, and a cowd with a working plugin records it from the
# kernel's replay, after which flushes work and everything survives a
# rebuild of the device.
. ./lib.sh

build=$(cd "$(dirname "$(command -v cowd)")/.." && pwd)
[ -f "$build/test-plugins/flaky.so" ] || fail "no $build/test-plugins/flaky.so (make helpers)"
make_base base.img 16M 4
base_sum=$(sha base.img)
truncate -s 16M store.img
B=$(loop -r base.img)
S=$(loop store.img)
table="0 $(blockdev --getsz "$B") cow pe $B $S 128"
track pe
dmsetup create pe --table "$table"
COWD_PLUGIN_DIR=$build/test-plugins COW_FLAKY_PLUGIN=$build/plugins/packed.so \
	COW_FLAKY_MARK_CHUNK=7 cowd --format flaky --no-reload --commit-interval 3600 \
	--pidfile /run/dm-cow/pe.pid --log-file /run/dm-cow/pe.log pe
pid=$(cat /run/dm-cow/pe.pid)
: >pat.bin
put() {	# put CHUNK GEN: 4 KiB of pattern at the chunk's start
	cow-pattern put pat.bin 0 $(($1 * 128)) 8 44 "$2"
	dd if=pat.bin of=/dev/mapper/pe bs=4096 count=1 seek=$(($1 * 16)) oflag=direct \
		conv=notrunc status=none
}
holds() {
	cow-pattern check /dev/mapper/pe $(($1 * 65536)) 4096 44 "$2"
}

put 3 1 || fail "a first write failed"
sync /dev/mapper/pe || fail "a flush failed before anything went wrong"
put 7 1 || fail "the write to chunk 7 failed: its data was in place, only the record failed"
kill -0 "$pid" || fail "cowd died of a chunk its plugin could not record: $(cat /run/dm-cow/pe.log)"
holds 7 1 || fail "chunk 7 does not read back"
sync /dev/mapper/pe 2>/dev/null && fail "a flush succeeded although chunk 7 is not recorded"
dmsetup status pe | has ' failing' || fail "the group does not say failing: $(dmsetup status pe)"
has "cannot record chunk 7" /run/dm-cow/pe.log || fail "cowd did not say why: $(cat /run/dm-cow/pe.log)"
put 9 1 || fail "cowd stopped serving after chunk 7"
note "an unrecordable chunk: its write worked, flushes failed, cowd kept serving"

kill "$pid"
wait_until "cowd exits" gone "$pid"
cowd --no-reload --pidfile /run/dm-cow/pe.pid --log-file /run/dm-cow/pe.log pe
sync /dev/mapper/pe || fail "a flush failed after a cowd with a working plugin took over"
dmsetup status pe | has ' failing' && fail "still failing: $(dmsetup status pe)"
note "a new cowd recorded chunk 7 from the kernel's replay"

pid=$(cat /run/dm-cow/pe.pid)
kill "$pid"
wait_until "cowd exits" gone "$pid"
dmsetup remove pe
dmsetup create pe --table "$table"
cowd --no-reload --pidfile /run/dm-cow/pe.pid --log-file /run/dm-cow/pe.log pe
for c in 3 7 9; do holds $c 1 || fail "chunk $c lost its data"; done
cmp -n $((3 * 65536)) base.img /dev/mapper/pe || fail "chunks never written differ from the base"
pid=$(cat /run/dm-cow/pe.pid)
kill "$pid"
wait_until "cowd exits" gone "$pid"
dmsetup remove pe
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
