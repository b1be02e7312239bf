# A first write waiting for an absent daemon does not hang
# `dmsetup suspend --noflush`: the target hands the held write back to
# device-mapper, which issues it again after the resume; once a daemon is
# there it completes with its data.  A flushing suspend, by design, waits
# for the held write, and completes once a daemon serves it.
. ./lib.sh

make_base base.img 16M 7
make_base new.img 16M 11		# the data the test writes: seed 11
base_sum=$(sha base.img)
cp base.img model.img
truncate -s 32M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
mkdir -p /run/dm-cow
track ns
dmsetup create ns --table "0 $(blockdev --getsz "$B") cow ns $B $C 128"

start_cowd() {
	cowd --no-reload --pidfile /run/dm-cow/ns.pid --log-file /run/dm-cow/ns.log ns ||
		fail "cowd could not serve the group"
	track_pid "$(cat /run/dm-cow/ns.pid)"
}

# On the way out, a write may still wait for a daemon or the device may be
# suspended: resume it and serve the group so that cleanup can remove it.
rescue() {
	if dmsetup info ns >/dev/null 2>&1; then
		dmsetup resume ns >/dev/null 2>&1 || true
		[ "$(dm_status ns daemon)" = attached ] ||
			cowd --no-reload --pidfile /run/dm-cow/ns.pid ns >/dev/null 2>&1 || true
		wait 2>/dev/null || true
	fi
	pid=$(cat /run/dm-cow/ns.pid 2>/dev/null || true)
	_cleanup
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
}
trap rescue EXIT

# What the device and the writer were doing when a wait gave up.
diagnose() {
	echo "dmsetup status: $(dmsetup status ns)"
	dmsetup info ns
	ls -l /dev/mapper
	if [ -n "${writer:-}" ]; then
		echo "writer $writer: $(cat /proc/"$writer"/status 2>/dev/null | grep State || echo exited)"
		cat /proc/"$writer"/stack 2>/dev/null
	fi
	grep . /run/dm-cow/*.log 2>/dev/null | tail -n 20
}

# held_write CHUNK: a direct write of 64 KiB chunk CHUNK (seed 11) in the
# background ($writer), and the model updated alike; returns once the
# kernel holds it for the daemon.
held_write() {
	local pending
	pending=$(dm_status ns pending)
	dd if=new.img of=/dev/mapper/ns bs=64k skip="$1" seek="$1" count=1 oflag=direct \
		status=none &
	writer=$!
	dd if=new.img of=model.img bs=64k skip="$1" seek="$1" count=1 conv=notrunc status=none
	wait_until "the first write to chunk $1 held for the daemon" \
		test "$(dm_status ns pending)" = $((pending + 1))
}

suspended() {
	dmsetup info ns | has 'State: *SUSPENDED'
}

# 1. --noflush with a write held and no daemon.
held_write 5
status=0
timeout 120 dmsetup suspend --noflush ns || status=$?
[ $status -ne 124 ] || fail "dmsetup suspend --noflush hung (120 s) on a first write held for an absent daemon"
[ $status -eq 0 ] || fail "dmsetup suspend --noflush failed (exit $status) with a first write held"
suspended || fail "the device is not suspended after suspend --noflush"
kill -0 $writer 2>/dev/null || fail "the held write ended during the noflush suspend, with no daemon"
dmsetup resume ns
start_cowd
wait $writer || fail "the write held across the noflush suspend failed"
dev_cmp /dev/mapper/ns model.img ||
	fail "after the noflush suspend: the device differs from the model (chunk 5 new, the rest base)"
note "suspend --noflush with a held write: suspended, write completed after resume"

# 2. A flushing suspend waits for the held write, until a daemon serves it.
pid=$(cat /run/dm-cow/ns.pid)
kill -9 "$pid"
wait_until "cowd gone after kill -9" gone "$pid"
[ "$(dm_status ns daemon)" = detached ] || fail "the kernel still sees a daemon after kill -9"
held_write 9
dmsetup suspend ns &
suspender=$!
in_suspend_wait() {
	kill -0 $suspender 2>/dev/null ||
		fail "a flushing suspend completed while a first write still waited for the daemon"
	has dm_wait_for_completion "/proc/$suspender/stack" 2>/dev/null
}
wait_until "the flushing suspend waiting for in-flight I/O" in_suspend_wait
kill -0 $writer 2>/dev/null || fail "the held write ended without a daemon"
start_cowd
wait_until "the flushing suspend completes once cowd serves the write" \
	gone $suspender
wait $suspender || fail "the flushing suspend failed"
wait $writer || fail "the write held during the flushing suspend failed"
suspended || fail "the device is not suspended after the flushing suspend"
dmsetup resume ns
dev_cmp /dev/mapper/ns model.img ||
	fail "after the flushing suspend: the device differs from the model (chunks 5 and 9 new)"
note "flushing suspend with a held write: waited for cowd, then completed"

pid=$(cat /run/dm-cow/ns.pid)
dmsetup remove ns
wait_until "cowd leaving once its device is removed" gone "$pid"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
