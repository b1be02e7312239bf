# The control-protocol fuzzer: cow-ctlfuzz is the group's daemon and sends
# random batches, mostly well-formed and some anything at all, restarting
# itself every few hundred batches, while writers, readers and flushes go
# on against the device.  A million messages on the debug kernel (whose
# KASAN, lockdep and kmemleak run-all checks after the test; about three
# minutes), a hundred thousand on the others.  Afterwards the kernel still
# serves a group with a real cowd correctly, and the base never changed.
. ./lib.sh

make_base base.img 8M 3
base_sum=$(sha base.img)
truncate -s 16M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
track cf
# Faults and flushes the fuzzer leaves unanswered fail after 200 ms.
dmsetup create cf --table "0 16384 cow cf $B $C 16 1 daemon_timeout=200"
case $(uname -r) in
*debug*) messages=1000000 ;;
*) messages=100000 ;;
esac

io() {	# worker N: first writes, reads and flushes until the stop file
	local n=0
	until [ -e stop ]; do
		n=$((n + 1))
		dd if=/dev/urandom of=/dev/mapper/cf bs=4k seek=$((RANDOM % 2048)) count=1 \
			oflag=direct $([ $((n % 5)) = 0 ] && echo conv=fsync) status=none 2>/dev/null || true
		dd if=/dev/mapper/cf of=/dev/null bs=4k skip=$((RANDOM % 2048)) count=4 \
			iflag=direct status=none 2>/dev/null || true
	done
}
pids=()
for w in 1 2 3; do
	io $w &
	pids+=($!)
	track_pid $!
done
cow-ctlfuzz cf $messages $((RANDOM + 1)) >fuzz.txt 2>&1 || fail "$(cat fuzz.txt)"
touch stop
for p in "${pids[@]}"; do
	wait "$p" || true
done
note "$(tail -n1 fuzz.txt); kernel: rejected=$(dm_status cf rejected) mapped=$(dm_status cf mapped) timed_out=$(dm_status cf timed_out)"
[ "$(dm_status cf rejected)" -gt $((messages / 20)) ] ||
	fail "the kernel counted $(dm_status cf rejected) refusals for $messages messages"
dmsetup remove cf
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"

# The module still serves a group with a real cowd, by content.
cp base.img model.img
track ok
cowctl create ok base.img ok.cow --chunk 16k >/dev/null
cow-pattern random /dev/mapper/ok model.img 300 5 4 65536 || fail "writes failed after the fuzzing"
sync /dev/mapper/ok
dev_cmp /dev/mapper/ok model.img || fail "the device differs from the model after the fuzzing"
cowctl remove ok
cowctl create ok base.img ok.cow >/dev/null
dev_cmp /dev/mapper/ok model.img || fail "the store lost data after the fuzzing"
cowctl remove ok
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
