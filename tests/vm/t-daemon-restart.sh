# kill -9 of cowd at random moments during a verified write workload, each
# time followed by a new cowd: the workload sees no I/O error, the device
# matches the model, and after remove + create (from the store alone)
# every byte is still there.
. ./lib.sh

make_base base.img 64M 7
base_sum=$(sha base.img)
cp base.img model.img
track rs
cowctl create rs base.img rs.cow --chunk 16k >/dev/null
# The workload runs rounds of the random workload (a new seed each, to the
# device and the model alike) until the stop file appears, so the eight
# kills all land while it runs, however fast the machine is.
(
	round=0
	until [ -e stop ]; do
		round=$((round + 1))
		cow-pattern random /dev/mapper/rs model.img 1000 $((20 + round)) 4 262144 || exit 1
	done
	echo $round >rounds
) &
workload=$!
track_pid $workload
kills=0 misses=0
while [ $kills -lt 8 ]; do
	kill -0 $workload 2>/dev/null || break
	sleep 0.$((RANDOM % 8 + 2))
	# A new cowd writes its pidfile just after its parent returns: a
	# few misses are normal, many mean that cowd died on its own.
	pid=$(cat /run/dm-cow/rs.pid 2>/dev/null || true)
	if [ -z "$pid" ] || ! kill -9 "$pid" 2>/dev/null; then
		misses=$((misses + 1))
		[ $misses -lt 50 ] ||
			fail "no cowd to kill after $kills kills (it exited by itself?); its log: $(tail -n 20 /run/dm-cow/rs.log 2>&1)"
		continue
	fi
	misses=0
	kills=$((kills + 1))
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	[ "$(dm_status rs daemon)" = detached ] || fail "the kernel still sees a daemon after kill -9"
	sleep 0.$((RANDOM % 5))
	cowd --pidfile /run/dm-cow/rs.pid --log-file /run/dm-cow/rs.log rs ||
		fail "a new cowd could not take over"
done
touch stop
wait $workload || fail "the workload saw an I/O error across $kills daemon kills"
[ $kills -eq 8 ] || fail "the workload ended after $kills kills, without the stop file"
note "$kills kills during $(cat rounds) workload rounds; $(mapped_total rs) chunks mapped; $(dm_status rs commits) commits"
cmp /dev/mapper/rs model.img || fail "device differs from the model after the restarts"
cowctl remove rs
cowctl create rs base.img rs.cow --chunk 16k >/dev/null
cmp /dev/mapper/rs model.img || fail "the store lost data across the restarts"
cowctl remove rs
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
