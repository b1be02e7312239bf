# Flushes complete under sustained first writes: four writers keep writing
# chunks never written before while four flushers each run ten fsyncs of
# the device; all 40 flushes must complete long before the writers run out
# of fresh chunks (new chunks becoming READY all the time must not keep a
# flush waiting).  Then every chunk written holds its data and the rest
# the base's.  (t-flush-release checks the release rule itself, step by
# step.)
. ./lib.sh

chunk=4096
per_writer=8192				# fresh chunks for each writer
size=$((4 * per_writer * chunk))	# 128 MiB
make_base base.img $size 7
base_sum=$(sha base.img)
cp base.img model.img
track fp
cowctl create fp base.img fp.cow --chunk 4k >/dev/null
wait_attached fp

writers=()
for w in 0 1 2 3; do
	cow-pattern fresh /dev/mapper/fp model.img $((w * per_writer)) $per_writer $chunk 31 stop \
		>"written.$w" &
	writers+=($!)
	track_pid $!
done
# Each flusher: ten fsyncs (an empty flush bio each), one line per completion.
flushers=()
for f in 0 1 2 3; do
	(
		for _ in $(seq 10); do
			sync /dev/mapper/fp || exit 1
			echo >>"flushed.$f"
		done
	) &
	flushers+=($!)
	track_pid $!
done

flushed() {
	cat flushed.* 2>/dev/null | wc -l
}
# Wait for the flushers; a writer that ends first ran out of fresh chunks
# (or failed): the flushes were starved.  The two minutes detect a hang.
end=$((SECONDS + 120))
while :; do
	for i in 0 1 2 3; do
		kill -0 "${writers[$i]}" 2>/dev/null && continue
		status=0
		wait "${writers[$i]}" || status=$?
		[ $status -eq 3 ] ||
			fail "writer $i failed (exit $status) with $(flushed) of 40 flushes completed"
		fail "flushes starved: $(flushed) of 40 completed while writer $i made all its $per_writer first writes ($(mapped_total fp) chunks mapped in all)"
	done
	running=0
	for p in "${flushers[@]}"; do
		kill -0 "$p" 2>/dev/null && running=$((running + 1))
	done
	[ $running -gt 0 ] || break
	[ $SECONDS -lt $end ] ||
		fail "flushes hung: $(flushed) of 40 completed in 120 s while $(mapped_total fp) chunks were mapped"
	sleep 0.1
done
for p in "${flushers[@]}"; do
	wait "$p" || fail "a flusher's fsync failed"
done
[ "$(flushed)" -eq 40 ] || fail "$(flushed) flushes counted, want 40"
mapped=$(mapped_total fp)
touch stop
for i in 0 1 2 3; do
	status=0
	wait "${writers[$i]}" || status=$?
	[ $status -eq 0 ] || fail "writer $i failed (exit $status)"
done
written=$(awk '{ n += $1 } END { print n }' written.*)
note "40 flushes completed while $mapped chunks were mapped ($written first writes in all, of $((4 * per_writer)) fresh chunks)"
dev_cmp /dev/mapper/fp model.img || fail "the device differs from the model (written chunks and base)"
cowctl remove fp
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
