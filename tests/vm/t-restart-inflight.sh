# kill -9 of cowd while the kernel copies chunks it placed: the new cowd is
# told of every copy in flight (FILLING) before it allocates, so it puts
# neither data nor qcow2 metadata where those copies land.  The copies are
# held by suspending the base (a copy reads the base first): more than the
# kernel runs at once (64), so some wait their turn, and more than one
# read() returns.  While no cowd runs, 600 more first writes queue at lower
# chunk numbers: the replay looks past them in steps.  The new cowd then
# maps chunks whose L2 tables are new; after the copies land, qemu-img
# check is clean and the image matches the model.
. ./lib.sh

make_base base.img 16M 5
base_sum=$(sha base.img)
cp base.img model.img
# 4 KiB clusters: an L2 table covers 2 MiB, so new regions need new tables.
qemu-img create -q -f qcow2 -o cluster_size=4096 -b "$WORK/base.img" -F raw q.qcow2 16M
# The CoW device is a loop device of fixed size here: room to grow in.
truncate -s 24M q.qcow2
bl=$(loop -r base.img)
cl=$(loop q.qcow2)
sectors=$(blockdev --getsz "$bl")
track qi
track qbase
dmsetup create qbase --table "0 $sectors linear $bl 0"
dmsetup create qi --table "0 $sectors cow qi /dev/mapper/qbase $cl 8"
cowd --pidfile /run/dm-cow/qi.pid --log-file /run/dm-cow/qi.log --no-reload qi
track_pid "$(cat /run/dm-cow/qi.pid)"

# write FILE SECTOR [fsync]: FILE to the device and the model at SECTOR, in
# one write (a whole chunk written at once needs no copy from the base).
write() {
	local bs
	bs=$(stat -c %s "$1")
	dd if="$1" of=/dev/mapper/qi bs="$bs" seek=$(($2 * 512)) oflag=direct,seek_bytes \
		${3:+conv=fsync} status=none
	dd if="$1" of=model.img bs="$bs" seek=$(($2 * 512)) oflag=seek_bytes conv=notrunc status=none
}
copying() {
	[ "$(dm_status qi copying)" = "$1" ]
}
head -c 4096 /dev/urandom >chunk.bin
head -c 512 /dev/urandom >sector.bin
write chunk.bin 0 fsync

# kill_cowd: kill -9 the group's cowd.  start_cowd: start a new one.
kill_cowd() {
	local pid
	pid=$(cat /run/dm-cow/qi.pid)
	kill -9 "$pid"
	wait_until "cowd gone after kill -9" gone "$pid"
}
start_cowd() {
	cowd --pidfile /run/dm-cow/qi.pid --log-file /run/dm-cow/qi.log --no-reload qi
	track_pid "$(cat /run/dm-cow/qi.pid)"
}
pending() {
	[ "$(dm_status qi pending)" = "$1" ]
}

# 100 partial writes, queued while no cowd runs (so all of them are in the
# kernel before one is answered): each needs its chunk copied from the
# base, which holds the copies until it resumes.  The next cowd maps them:
# 64 copy, 36 wait for a turn.
kill_cowd
dmsetup suspend qbase
pids=()
for i in $(seq 0 99); do
	write sector.bin $(((1100 + 3 * i) * 8 + 1)) &
	pids+=($!)
done
wait_until "100 first writes wait for a daemon" pending 100
start_cowd
wait_until "every chunk mapped, 64 copying" eval 'pending 0 && copying 64'
kill_cowd

# 600 whole chunks through the page cache: writeback sends them at once,
# and they wait for a daemon, below every chunk that is copying.
head -c $((600 * 4096)) /dev/urandom >many.bin
dd if=many.bin of=/dev/mapper/qi bs=4096 seek=16 conv=fsync status=none &
pids+=($!)
dd if=many.bin of=model.img bs=4096 seek=16 conv=notrunc status=none
wait_until "600 first writes wait for a daemon" pending 600
start_cowd

# Whole-chunk writes need no copy: they land while the copies wait, in
# regions whose L2 tables the new cowd must place.
for mib in 4 8 12 14; do
	write chunk.bin $((mib * 2048)) fsync
done
copying 64 || fail "the held copies finished early"
dmsetup resume qbase
for p in "${pids[@]}"; do
	wait "$p" || fail "a write held behind its copy failed"
done
sync /dev/mapper/qi
dev_cmp /dev/mapper/qi model.img || fail "the device differs from the model"
# A MAP over a copy in flight is refused by the kernel: cowd placed a chunk
# before it knew of every copy.
[ "$(dm_status qi rejected)" = 0 ] || fail "$(dm_status qi rejected) MAPs refused"
note "$(mapped_total qi) chunks mapped"

pid=$(cat /run/dm-cow/qi.pid)
kill "$pid"
wait_until "cowd gone" gone "$pid"
dmsetup remove qi
set +e
qemu-img check q.qcow2 >check.txt 2>&1
status=$?
set -e
[ $status -eq 0 ] || [ $status -eq 3 ] || fail "qemu-img check found corruption: $(cat check.txt)"
qemu-img compare -f qcow2 -F raw q.qcow2 model.img >/dev/null ||
	fail "the image differs from the model"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
