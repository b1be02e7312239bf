# First writes without a round trip (issue 10 §2): cowd grants the kernel
# free locations of a packed store in advance; a first write takes one and
# fills it with no word from cowd.  With cowd stopped (SIGSTOP), first
# writes to fresh chunks still complete, and no fault is raised; their
# READYs reach cowd once it runs again, and a flush commits them.  A new
# cowd (the old one killed with grants unused) finds everything, and the
# store checks clean.
. ./lib.sh

make_base base.img 32M 3
base_sum=$(sha base.img)
truncate -s 48M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
size=$(blockdev --getsz "$B")
track gr
dmsetup create gr --table "0 $size cow gr $B $C 128"
cowd --no-reload --pidfile /run/dm-cow/gr.pid --log-file /run/dm-cow/gr.log gr
pid=$(cat /run/dm-cow/gr.pid)
# A failure with cowd stopped must not leave it so.
trap 'kill -CONT "$pid" 2>/dev/null || true; _cleanup' EXIT
granted() { sed -n 's/^granted=//p' /run/dm-cow/gr.status 2>/dev/null; }
has_grants() { [ "$(granted)" -ge 64 ] 2>/dev/null; }
wait_until "cowd granting locations" has_grants
note "cowd granted $(granted) locations"

cp base.img model.img
: >pat.bin
put() {	# put CHUNK GEN: 4 KiB at 8 KiB into the 64 KiB chunk, device and model
	cow-pattern put pat.bin 0 $(($1 * 128 + 16)) 8 41 "$2"
	dd if=pat.bin of=/dev/mapper/gr bs=4096 seek=$(($1 * 16 + 2)) count=1 oflag=direct \
		conv=notrunc status=none
	dd if=pat.bin of=model.img bs=4096 seek=$(($1 * 16 + 2)) count=1 conv=notrunc status=none
}

# cowd stopped: 40 first writes to fresh chunks complete without it.
kill -STOP "$pid"
for c in $(seq 100 7 373); do
	put "$c" 1 &
	w=$!
	wait_until "first write to chunk $c with cowd stopped (no grant taken?)" gone "$w"
	wait "$w" || fail "first write to chunk $c failed"
done
[ "$(dm_status gr pending)" = 0 ] || fail "a first write raised a fault: $(dmsetup status gr)"
dev_cmp /dev/mapper/gr model.img || fail "the device differs from the model with cowd stopped"
note "40 first writes completed with cowd stopped, no fault raised"
kill -CONT "$pid"
sync /dev/mapper/gr || fail "the flush after cowd came back failed"
[ "$(dm_status gr mapped)" = 40 ] || fail "mapped=$(dm_status gr mapped), want 40"

# More first writes than one grant holds, cowd running: every write lands.
cow-pattern random /dev/mapper/gr model.img 600 5 2 131072
sync /dev/mapper/gr
dev_cmp /dev/mapper/gr model.img || fail "the device differs from the model after random writes"

# A new cowd: the old one's unused grants are dropped, the store has it all.
kill "$pid"
wait_until "cowd exits" gone "$pid"
cowd --no-reload --pidfile /run/dm-cow/gr.pid --log-file /run/dm-cow/gr.log gr
pid=$(cat /run/dm-cow/gr.pid)
for c in $(seq 400 7 442); do put "$c" 2; done
sync /dev/mapper/gr
dev_cmp /dev/mapper/gr model.img || fail "the device differs from the model after a restart"
dmsetup remove gr
wait_until "cowd exits" gone "$pid"
cowctl check "$C" "$B" || [ $? -eq 4 ] || fail "cowctl check of the store failed"
# Built anew from the store alone.
dmsetup create gr --table "0 $size cow gr $B $C 128"
cowd --no-reload --pidfile /run/dm-cow/gr.pid --log-file /run/dm-cow/gr.log gr
pid=$(cat /run/dm-cow/gr.pid)
dev_cmp /dev/mapper/gr model.img || fail "the store does not hold what was written"
dmsetup remove gr
wait_until "cowd exits" gone "$pid"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
