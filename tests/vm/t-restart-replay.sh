# kill -9 of cowd with first writes filled but not committed: the new cowd
# learns them from the kernel's replay of READYs, in chunk order, which is
# not the order their locations were given in.  It must hold every one
# before it records any: recording a chunk may place metadata (a new
# qcow2 L2 table), which must not land where a chunk replayed later has
# its data.  Each store format, on a fresh store (no table committed yet),
# three 4 KiB writes to chunks 18, 16 and 31 (granted locations in that
# order), a cowd that never commits (--commit-interval 3600): after the
# restart the device, the store's check, and for qcow2 qemu-img check and
# compare agree with a model.
. ./lib.sh

make_base raw.img 4M 7
head -c 4096 /dev/urandom >p.bin
for fmt in qcow2 packed uml; do
	dev=rr-$fmt
	cp raw.img model.img
	track $dev
	cowctl create $dev raw.img s.$fmt --format $fmt --no-daemon >/dev/null
	cowd --commit-interval 3600 --pidfile /run/dm-cow/$dev.pid --log-file /run/dm-cow/$dev.log $dev
	for at in 300 258 500; do	# (4 KiB blocks: chunks 18, 16, 31)
		dd if=p.bin of=/dev/mapper/$dev bs=4096 seek=$at oflag=direct conv=notrunc status=none
		dd if=p.bin of=model.img bs=4096 seek=$at conv=notrunc status=none
	done
	[ "$(dm_status $dev mapped)" -ge 3 ] || fail "$fmt: the writes are not in the kernel's tree"
	pid=$(cat /run/dm-cow/$dev.pid)
	kill -9 "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	cowd --pidfile /run/dm-cow/$dev.pid --log-file /run/dm-cow/$dev.log $dev
	cmp /dev/mapper/$dev model.img || fail "$fmt: after the restart the device reads differently"
	sync	# (a flush: the new cowd commits the replayed chunks)
	cowctl remove $dev
	cowctl check s.$fmt raw.img >check.txt 2>&1 || fail "$fmt: the store does not check: $(cat check.txt)"
	if [ $fmt = qcow2 ]; then
		qemu-img check -q s.qcow2 || fail "qemu-img check after the restart"
		qemu-img compare -q -f qcow2 -F raw s.qcow2 model.img || fail "qemu-img compare after the restart"
	fi
	cowctl create $dev raw.img s.$fmt >/dev/null
	cmp /dev/mapper/$dev model.img || fail "$fmt: made again, the device reads differently"
	cowctl remove $dev
	note "$fmt: three uncommitted chunks replayed out of their locations' order: device, store check agree"
done
