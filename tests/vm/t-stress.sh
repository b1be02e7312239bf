# Everything at once: verified writers (first writes and rewrites), readers
# and flushers run while cowd reloads every half second, is killed and
# restarted, and the device is suspended and resumed, flushing and
# noflush, in turn.  Nothing hangs, no I/O fails, and the device matches the
# model, also after it is built anew from its store.  Then the device is
# removed (forced) in the middle of new I/O: the I/O fails cleanly, cowd
# leaves, and the store is consistent.  run-all checks the kernel log.
. ./lib.sh

make_base base.img 64M 7
base_sum=$(sha base.img)
cp base.img model.img
track st
cowctl create st base.img st.cow --chunk 16k >/dev/null
restart_cowd st		# reloads every half second from now on

# Writers: rounds of the verified random workload until the stop file.
(
	round=0
	until [ -e stop ]; do
		round=$((round + 1))
		cow-pattern random /dev/mapper/st model.img 400 $((40 + round)) 4 131072 || exit 1
	done
) &
writers=$!
track_pid $writers
# Readers of fresh and mapped chunks, and a flusher.
readers=()
for r in 1 2; do
	(
		until [ -e stop ]; do
			dd if=/dev/mapper/st of=/dev/null iflag=direct bs=16k count=4 \
				skip=$((RANDOM % 1020)) status=none || exit 1
		done
	) &
	readers+=($!)
	track_pid $!
done
(
	until [ -e stop ]; do
		sync /dev/mapper/st || exit 1
	done
) &
flusher=$!
track_pid $flusher

# progress: the group made a commit since the last call (an event, not a
# time: the workload and its flushes are moving).
last_commits=$(dm_status st commits)
progressed() {
	local c
	c=$(dm_status st commits)
	[ "$c" -gt "$last_commits" ] && last_commits=$c
}
alive() {
	kill -0 $writers 2>/dev/null && kill -0 $flusher 2>/dev/null ||
		fail "the workload stopped (an I/O error?) during: $1"
}

# dm_retry suspend|resume [ARGS]: device-mapper refuses (EINVAL) a suspend
# or resume that meets another one, and cowd's reloads suspend and resume
# the device every half second: try again, a bounded number of times.
dm_retry() {
	local tries=0 r
	until r=0; timeout 120 dmsetup "$@" st 2>dm.err || r=$?; [ $r = 0 ]; do
		[ $r != 124 ] || fail "dmsetup $* hung"
		has "Invalid argument" dm.err || fail "dmsetup $* failed: $(cat dm.err)"
		tries=$((tries + 1))
		[ $tries -lt 100 ] || fail "dmsetup $* refused 100 times"
		sleep 0.05
	done
}

actions=(kill noflush flush kill flush noflush kill)
for a in "${actions[@]}"; do
	wait_until "progress before '$a'" progressed
	alive "the run up to '$a'"
	case $a in
	kill)
		restart_cowd st ;;
	noflush)
		dm_retry suspend --noflush
		dm_retry resume ;;
	flush)
		dm_retry suspend
		dm_retry resume ;;
	esac
	alive "'$a'"
done
wait_until "progress after the last action" progressed
touch stop
wait $writers || fail "the writers saw an I/O error"
for r in "${readers[@]}"; do wait "$r" || fail "a reader saw an I/O error"; done
wait $flusher || fail "a flush failed"
note "${#actions[@]} actions; $(mapped_total st) chunks mapped; $(dm_status st commits) commits"
sync /dev/mapper/st
dev_cmp /dev/mapper/st model.img || fail "the device differs from the model"
cowctl remove st
cowctl create st base.img st.cow --chunk 16k >/dev/null
dev_cmp /dev/mapper/st model.img || fail "the store lost data: the device built anew differs from the model"

# Removal in the middle of I/O: the writers (whose data no model keeps)
# fail with EIO once the table is replaced, cowd leaves, the store is sound.
rm -f stop
cp model.img scratch.img
(
	until [ -e stop ]; do
		cow-pattern random /dev/mapper/st scratch.img 400 $((RANDOM + 100)) 4 131072 || exit 0
	done
) &
late=$!
track_pid $late
pid=$(cat /run/dm-cow/st.pid)
last_commits=$(dm_status st commits)
sync /dev/mapper/st
wait_until "progress before the removal" progressed
# While the writers keep it open, --force swaps in a table that fails all
# I/O (the cow targets go) and the removal itself waits for the last close.
# cowd reloads every half second: its load and dmsetup's can cross
# (device-mapper has no compare-and-swap of tables; cowd leaves a table
# it did not load alone, which narrows but cannot close the window), so
# an admin may have to say it again.
for try in 1 2 3 4 5; do
	r=0
	timeout 120 dmsetup remove --force st >remove.out 2>&1 || r=$?
	[ $r != 124 ] || fail "dmsetup remove --force hung"
	dmsetup info st >/dev/null 2>&1 && dmsetup table st | has ' cow ' || break
	note "dmsetup remove --force, try $try: cowd's reload crossed it; again"
done
if dmsetup info st >/dev/null 2>&1 && dmsetup table st | has ' cow '; then
	fail "the cow table survived 5 times dmsetup remove --force: $(cat remove.out)"
fi
touch stop
wait_until "the writers leaving after the removal" gone $late
dmsetup info st >/dev/null 2>&1 && { dmsetup remove st || fail "the device cannot be removed"; }
wait_until "cowd leaving once its device is gone" gone "$pid"
losetup -D
r=0
cowctl check st.cow base.img >check.out 2>&1 || r=$?
[ $r = 0 ] || [ $r = 4 ] || fail "the store is damaged after a removal mid-I/O (cowctl check exit $r): $(cat check.out)"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
