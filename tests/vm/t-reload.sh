# Periodic table reloads: runs of mapped chunks become linear segments into
# the CoW device and the kernel drops them from its tree; data stays right
# through reloads under concurrent writes and flushes; a DROP of chunks a
# live cow target serves is refused; the segment cap is honoured and
# reported; the suspend window is measured.
. ./lib.sh

make_base base.img 64M 7
base_sum=$(sha base.img)
cp base.img model.img
track rl
cowctl create rl base.img rl.cow --chunk 16k >/dev/null
pid=$(cat /run/dm-cow/rl.pid)
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
# A daemon that reloads after every 64 new mappings and every half second.
cowd --pidfile /run/dm-cow/rl.pid --log-file /run/dm-cow/rl.log \
	--reload-after 64 --reload-interval 0.5 rl

# Sequential first writes coalesce into few linear segments.
dd if=/dev/urandom of=seq.bin bs=1M count=8 status=none
dd if=seq.bin of=/dev/mapper/rl bs=1M seek=4 oflag=direct status=none
dd if=seq.bin of=model.img bs=1M seek=4 conv=notrunc status=none
sync /dev/mapper/rl
sleep 2
linear=$(dmsetup table rl | grep -c ' linear ' || true)
[ "$linear" -ge 1 ] && [ "$linear" -le 3 ] || fail "8 MiB of sequential first writes gave $linear linear segments"
[ "$(dm_status rl dropped)" -ge 500 ] || fail "the kernel kept the linear chunks: dropped=$(dm_status rl dropped)"
cmp /dev/mapper/rl model.img || fail "data differs after the first reload"
note "sequential 8 MiB: $linear linear segment(s), $(dm_status rl dropped) chunks dropped from the tree"

# Random writes and flushes from 4 writers while reloads happen.
reloads_before=$(sed -n 's/^reloads=//p' /run/dm-cow/rl.status)
cow-pattern random /dev/mapper/rl model.img 1200 31 4 131072 || fail "writes failed during reloads"
sleep 2
reloads=$(sed -n 's/^reloads=//p' /run/dm-cow/rl.status)
[ $((reloads - reloads_before)) -ge 3 ] || fail "only $((reloads - reloads_before)) reloads during the workload"
cmp /dev/mapper/rl model.img || fail "data differs after reloads under load"
note "$((reloads - reloads_before)) reloads under load; table: $(dmsetup table rl | wc -l) lines; max suspend $(sed -n 's/^max_suspend_ms=//p' /run/dm-cow/rl.status) ms"

cowctl status rl | has "linear segments" || fail "cowctl status does not show the segments"

# Remove and re-create: the new daemon's first reload makes linear segments
# from the store's metadata alone.
cowctl remove rl
cowctl create rl base.img rl.cow --chunk 16k >/dev/null
sleep 1
[ "$(dmsetup table rl | grep -c ' linear ')" -ge 1 ] || fail "no linear segments after re-create"
cmp /dev/mapper/rl model.img || fail "data differs after re-create"
cowctl remove rl

# The cap: at most 5 linear segments, the rest stays in the tree.
track cap
cowctl create cap base.img rl.cow --chunk 16k >/dev/null
pid=$(cat /run/dm-cow/cap.pid)
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
cowd --pidfile /run/dm-cow/cap.pid --max-segments 5 --min-run 1 --reload-interval 0.3 cap
sleep 1
[ "$(dmsetup table cap | grep -c ' linear ')" -le 5 ] || fail "more linear segments than the cap"
grep -q "^capped=1" /run/dm-cow/cap.status || fail "the cap is not reported"
cowctl status cap | has -i "limit" || fail "cowctl status does not say the table is capped"
cmp /dev/mapper/cap model.img || fail "data differs with a capped table"
cowctl remove cap
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
