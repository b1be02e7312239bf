# First writes without a round trip (issue 10 §2): cowd grants the kernel
# free locations of a packed or qcow2 store in advance; a first write takes
# one and fills it with no word from cowd.  With cowd stopped (SIGSTOP),
# first writes to fresh chunks still complete, and no fault is raised; their
# READYs reach cowd once it runs again, and a flush commits them.  A new
# cowd (the old one killed with grants unused) finds everything, and the
# store checks clean (qemu-img check and compare for qcow2).
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
cp base.img model.img

# put NAME CHUNK GEN: 4 KiB at 8 KiB into the 64 KiB chunk, device and model
put() {
	cow-pattern put pat.bin 0 $(($2 * 128 + 16)) 8 41 "$3"
	dd if=pat.bin of="/dev/mapper/$1" bs=4096 seek=$(($2 * 16 + 2)) count=1 oflag=direct \
		conv=notrunc status=none
	dd if=pat.bin of=model.img bs=4096 seek=$(($2 * 16 + 2)) count=1 conv=notrunc status=none
}

# stopped_writes NAME COWDEV: with cowd stopped, 40 first writes to fresh
# chunks complete without it, and no fault is raised.  Each is 4 KiB inside
# a 64 KiB chunk: the base chunk is read, the data merged into it, and the
# CoW device sees one 64 KiB write per chunk (not a copy and then the 4 KiB
# write); nothing else writes it while cowd is stopped.
pid=
trap 'if [ -n "$pid" ]; then kill -CONT "$pid" 2>/dev/null || true; fi; _cleanup' EXIT
stopped_writes() {
	local name=$1 c w w0 w1
	granted() { sed -n 's/^granted=//p' "/run/dm-cow/$name.status" 2>/dev/null; }
	has_grants() { [ "$(granted)" -ge 64 ] 2>/dev/null; }
	pid=$(cat "/run/dm-cow/$name.pid")
	wait_until "cowd granting locations" has_grants
	note "$name: cowd granted $(granted) locations"
	: >pat.bin
	kill -STOP "$pid"
	w0=$(written "$2")
	for c in $(seq 100 7 373); do
		put "$name" "$c" 1 &
		w=$!
		wait_until "first write to chunk $c with cowd stopped (no grant taken?)" gone "$w"
		wait "$w" || fail "first write to chunk $c failed"
	done
	[ "$(dm_status "$name" pending)" = 0 ] || fail "a first write raised a fault: $(dmsetup status "$name")"
	w1=$(written "$2")
	[ $((w1 - w0)) = $((40 * 128)) ] ||
		fail "40 first writes of 4 KiB wrote $((w1 - w0)) sectors to the CoW device, want $((40 * 128)): one merged write per chunk"
	dev_cmp "/dev/mapper/$name" model.img || fail "the device differs from the model with cowd stopped"
	note "$name: 40 first writes completed with cowd stopped, no fault raised"
	kill -CONT "$pid"
	sync "/dev/mapper/$name" || fail "the flush after cowd came back failed"
	[ "$(dm_status "$name" mapped)" = 40 ] || fail "mapped=$(dm_status "$name" mapped), want 40"
}

stopped_writes gr "$C"

# More first writes than one grant holds, cowd running: every write lands.
cow-pattern random /dev/mapper/gr model.img 600 5 2 131072
sync /dev/mapper/gr
dev_cmp /dev/mapper/gr model.img || fail "the device differs from the model after random writes"

# A new cowd: the old one's unused grants are dropped, the store has it all.
kill "$pid"
wait_until "cowd exits" gone "$pid"
cowd --no-reload --pidfile /run/dm-cow/gr.pid --log-file /run/dm-cow/gr.log gr
pid=$(cat /run/dm-cow/gr.pid)
for c in $(seq 400 7 442); do put gr "$c" 2; done
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

# The same with a qcow2 store: granted clusters at the image's end, each
# used one needing an L2 table at most; qemu-img agrees with the model.
cp base.img model.img
qemu-img create -q -f qcow2 -o cluster_size=64k -b "$WORK/base.img" -F raw gq.qcow2
truncate -s 256K gq.qcow2	# whole sectors for the loop device
Q=$(loop gq.qcow2)
track gq
dmsetup create gq --table "0 $size cow gq $B $Q 128"
cowd --no-reload --pidfile /run/dm-cow/gq.pid --log-file /run/dm-cow/gq.log gq
stopped_writes gq "$Q"
cow-pattern random /dev/mapper/gq model.img 600 7 2 131072
sync /dev/mapper/gq
dev_cmp /dev/mapper/gq model.img || fail "qcow2: the device differs from the model"
restart_cowd gq
for c in $(seq 400 7 442); do put gq "$c" 2; done
sync /dev/mapper/gq
dev_cmp /dev/mapper/gq model.img || fail "qcow2: the device differs from the model after a restart"
pid=$(cat /run/dm-cow/gq.pid)
dmsetup remove gq
wait_until "cowd exits" gone "$pid"
qemu-img check gq.qcow2 >check.txt 2>&1 || [ $? -eq 3 ] || fail "qemu-img check: $(cat check.txt)"
qemu-img compare -f qcow2 -F raw gq.qcow2 model.img >/dev/null ||
	fail "qemu-img compare: the image differs from the model"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
