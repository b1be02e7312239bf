# kill -9 of cowd while the kernel copies chunks it placed: the new cowd is
# told of every copy in flight (FILLING) before it allocates, so it puts
# neither data nor qcow2 metadata where those copies land.  The copies are
# held by suspending the base (a copy reads the base first); the new cowd
# then maps chunks whose L2 tables are new; after the copies land,
# qemu-img check is clean and the image matches the model.
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

# Three partial writes: each needs its chunk copied from the base, which
# holds the copies until it resumes.
dmsetup suspend qbase
pids=()
for s in 25 33 41; do
	write sector.bin $s &
	pids+=($!)
done
wait_until "3 copies in flight" copying 3

pid=$(cat /run/dm-cow/qi.pid)
kill -9 "$pid"
wait_until "cowd gone after kill -9" gone "$pid"
cowd --pidfile /run/dm-cow/qi.pid --log-file /run/dm-cow/qi.log --no-reload qi
track_pid "$(cat /run/dm-cow/qi.pid)"

# Whole-chunk writes need no copy: they land while the copies wait, in
# regions whose L2 tables the new cowd must place.
for mib in 4 8 12 14; do
	write chunk.bin $((mib * 2048)) fsync
done
[ "$(dm_status qi copying)" = 3 ] || fail "the held copies finished early"
dmsetup resume qbase
for p in "${pids[@]}"; do
	wait "$p" || fail "a write held behind its copy failed"
done
sync /dev/mapper/qi
dev_cmp /dev/mapper/qi model.img || fail "the device differs from the model"
note "$(mapped_total qi) chunks mapped, $(dm_status qi rejected) MAPs refused"

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
