# Slab allocations that fail (failslab, on the debug kernel):
# 1. every allocation of a table load, one at a time (cow-failnth): a new
#    group and a table joining a live one; each error path unwinds (the
#    kernel log and the suite's kmemleak scan judge) and leaves no group;
# 2. cowd's messages to the kernel with every allocation failing: the
#    write waiting for the MAP fails with EIO after cowd's bounded retries,
#    cowd keeps serving, and the chunk works once memory is back;
# 3. the next few of cowd's allocations fail at each of 80 first writes,
#    wherever they are (the host space of a chunk: fallocate on the store's
#    file, in cowd's context; its MAP): cowd tries again and every write
#    succeeds;
# 4. a quarter of them failing: cowd tries again and every write succeeds;
# 5. every allocation of the writer's failing: its first writes succeed;
# 6. with 64 KiB chunks, the memory of merged fills (read the base chunk,
#    merge, one write) fails, its bio's or a page's: the fill falls back to
#    a kcopyd copy, seen as the 4 KiB written to the CoW device after the
#    chunk; every write succeeds.
# Everything written is checked, also after the device is built anew.
. ./lib.sh

FS=/sys/kernel/debug/failslab
if [ ! -d $FS ]; then
	case $(uname -r) in
	*dmcow-debug*) fail "the debug kernel has no $FS" ;;
	esac
	echo "needs failslab: runs on the debug kernel"
	exit 77
fi
failslab_off() {
	echo 0 >$FS/probability
	echo Y >$FS/ignore-gfp-wait
	if [ -d /sys/kernel/debug/dm-cow-fill-alloc ]; then
		echo 0 >/sys/kernel/debug/dm-cow-fill-alloc/probability
	fi
}
trap 'failslab_off; _cleanup' EXIT
# Only tasks marked in /proc/PID/make-it-fail, and fail-nth; sleeping
# allocations (GFP_KERNEL, GFP_NOIO) too; no stack dump per failure.
echo 0 >$FS/probability
echo Y >$FS/task-filter
echo N >$FS/ignore-gfp-wait
echo 0 >$FS/verbose
echo 1 >$FS/interval
echo 0 >$FS/space

# 4 KiB chunks; the chunks written below are 64 apart, so that each first
# write needs new xarray nodes in the kernel.
make_base base.img 16M 5
base_sum=$(sha base.img)
truncate -s 16M store.img store2.img
B=$(loop -r base.img)
S=$(loop store.img)
size=$(blockdev --getsz "$B")
table="0 $size cow fs $B $S 8"
track fs
dmsetup create fs --table "$table"
# Without grants: parts 2 and 3 are about the MAP path.
cowd --no-reload --no-grants --pidfile /run/dm-cow/fs.pid --log-file /run/dm-cow/fs.log fs
pid=$(cat /run/dm-cow/fs.pid)

# 1. Table loads: a new group (into a device that serves linear), then one
# joining the live group.
track fn
dmsetup create fn --table "0 $size linear $B 0"
rounds=$(cow-failnth new fn "0 $size cow fn $B $(loop store2.img) 8") ||
	fail "a failed load of a new group did not unwind"
[ "$rounds" -ge 5 ] || fail "only $rounds allocations in a table load?"
note "new group: $rounds table loads, each failing one more allocation"
dmsetup remove fn
rounds=$(cow-failnth join fs "$table") || fail "a failed load into a live group did not unwind"
[ "$rounds" -ge 5 ] || fail "only $rounds allocations in a table load?"
note "joining a group: $rounds table loads, each failing one more allocation"

put() {	# put CHUNK GEN
	cow-pattern put pat.bin 0 $(($1 * 8)) 8 77 "$2"
	dd if=pat.bin of=/dev/mapper/fs bs=4096 count=1 seek="$1" oflag=direct conv=notrunc \
		status=none 2>/dev/null
}
holds() {	# holds CHUNK GEN
	cow-pattern check /dev/mapper/fs $(($1 * 4096)) 4096 77 "$2"
}
: >pat.bin

# 2. Every allocation of cowd's fails.
echo 1 >/proc/"$pid"/make-it-fail
echo -1 >$FS/times
echo 100 >$FS/probability
put 1000 1 && fail "a write succeeded although the kernel had no memory for its MAP"
echo 0 >$FS/probability
kill -0 "$pid" || fail "cowd died when the kernel had no memory"
[ "$(dm_status fs failed)" = 1 ] || fail "cowd did not fail the chunk: $(dmsetup status fs)"
cmp -n 4096 -i $((1000 * 4096)) base.img /dev/mapper/fs || fail "the failed chunk does not read the base"
put 1000 2 || fail "the write failed once memory was back"
holds 1000 2 || fail "chunk 1000 does not hold what was written"
note "no memory at all: the write failed (EIO), cowd kept serving, the next write worked"

# 3. The next 3 allocations of cowd's fail, at each first write.  The
# chunks get consecutive slots, so that the store file's fallocate needs
# new memory at some of them (even chunks: never those of part 4).
injected=0
early=()
for c in $(seq 2002 2 2160); do
	echo 3 >$FS/times
	echo 100 >$FS/probability
	put $c 4 || fail "write to chunk $c failed although only 3 of cowd's allocations failed: $(dmsetup status fs)"
	echo 0 >$FS/probability
	injected=$((injected + 3 - $(cat $FS/times)))
	early+=($c)
done
[ $injected -ge 1 ] || fail "no allocation failed: the test tested nothing"
note "$injected allocations of cowd's failed under 80 first writes; all succeeded"

# 4. A quarter of cowd's allocations fail.
echo 100000 >$FS/times
echo 25 >$FS/probability
chunks=()
for i in $(seq 0 63); do
	c=$((i * 64 + 1))
	put $c 3 || fail "write to chunk $c failed although cowd retries: $(dmsetup status fs)"
	chunks+=($c)
done
sync /dev/mapper/fs 2>/dev/null || true # a commit may fail for want of memory
echo 0 >$FS/probability
injected=$((100000 - $(cat $FS/times)))
[ $injected -ge 1 ] || fail "no allocation failed: the test tested nothing"
sync /dev/mapper/fs || fail "a flush failed once memory was back"
echo 0 >/proc/"$pid"/make-it-fail
note "$injected allocations failed under 64 first writes; all succeeded"

# 5. Every allocation of the writer's fails: its first writes take their
# pending chunks from the mempool's reserve and allocate nothing else (the
# remap xarray's nodes come with the MAP, in cowd).  Every write succeeds.
: >pats.bin
late=()
for i in $(seq 0 31); do
	c=$((i * 64 + 33))
	cow-pattern put pats.bin $((i * 4096)) $((c * 8)) 8 77 5
	late+=($c)
done
echo 100000 >$FS/times
echo 100 >$FS/probability
python3 - /dev/mapper/fs "${late[@]}" <<'PY' || fail "a first write failed when its writer had no memory"
import mmap, os, sys

fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
pats = open("pats.bin", "rb").read()
buf = mmap.mmap(-1, 4096)
chunks = [int(c) for c in sys.argv[2:]]
fail = open("/proc/self/make-it-fail", "w")
fail.write("1")
fail.flush()
for i, c in enumerate(chunks):
    buf[:] = pats[i * 4096:(i + 1) * 4096]
    try:
        n = os.pwrite(fd, buf, c * 4096)
    except OSError as e:
        n = e.strerror
    if n != 4096:
        fail.write("0")
        fail.flush()
        print("first write to chunk %d: %s" % (c, n))
        sys.exit(1)
fail.write("0")
fail.flush()
PY
echo 0 >$FS/probability
injected=$((100000 - $(cat $FS/times)))
[ $injected -ge ${#late[@]} ] || fail "only $injected of the writer's allocations failed: the test tested little"
for c in "${late[@]}"; do holds "$c" 5 || fail "chunk $c does not hold its first write"; done
note "$injected of the writer's allocations failed under ${#late[@]} first writes; all succeeded"

check_all() {
	local c
	for c in "${late[@]}"; do holds "$c" 5 || fail "chunk $c lost its data $1"; done
	for c in "${chunks[@]}"; do holds "$c" 3 || fail "chunk $c lost its data $1"; done
	holds 1000 2 || fail "chunk 1000 lost its data $1"
	for c in "${early[@]}"; do holds "$c" 4 || fail "chunk $c lost its data $1"; done
	cmp -n 4096 base.img /dev/mapper/fs || fail "chunk 0 is not the base's $1"
}
check_all ""
kill "$pid"
wait_until "cowd exits" gone "$pid"
dmsetup remove fs
dmsetup create fs --table "$table"
cowd --no-reload --pidfile /run/dm-cow/fs.pid --log-file /run/dm-cow/fs.log fs
check_all "after the device was built anew"
pid=$(cat /run/dm-cow/fs.pid)
kill "$pid"
wait_until "cowd exits" gone "$pid"
dmsetup remove fs

# 6. Merged fills without memory (the fill's memory is allocated by the
# work, out of failslab's reach: the module's own fault attribute).
FF=/sys/kernel/debug/dm-cow-fill-alloc
[ -d $FF ] || fail "the debug kernel has no $FF"
truncate -s 16M store3.img
S3=$(loop store3.img)
track fm
dmsetup create fm --table "0 $size cow fm $B $S3 128"
cowd --no-reload --no-grants --commit-interval 3600 --pidfile /run/dm-cow/fm.pid --log-file /run/dm-cow/fm.log fm
pid=$(cat /run/dm-cow/fm.pid)
cp base.img model.img
# fill_writes FIRST LAST SECTORS: a 4 KiB first write into each chunk, each
# writing SECTORS to the CoW device (128: merged; 136: a copy, then the write).
fill_writes() {
	local c n
	for c in $(seq "$1" "$2"); do
		cow-pattern put pat.bin 0 $((c * 128 + 24)) 8 78 6
		n=$(written "$S3")
		dd if=pat.bin of=/dev/mapper/fm bs=4096 count=1 seek=$((c * 16 + 3)) oflag=direct \
			conv=notrunc status=none || fail "write to chunk $c failed: $(dmsetup status fm)"
		dd if=pat.bin of=model.img bs=4096 count=1 seek=$((c * 16 + 3)) conv=notrunc status=none
		n=$(($(written "$S3") - n))
		[ "$n" = "$3" ] || fail "chunk $c: $n sectors written to the CoW device, want $3"
	done
}
echo 0 >$FF/verbose
echo -1 >$FF/times
echo 1 >$FF/interval
echo 100 >$FF/probability
fill_writes 10 25 136		# the bio's allocation fails
echo 7 >$FF/interval		# 17 allocations a fill: a page's fails
fill_writes 26 41 136
echo 0 >$FF/probability
fill_writes 42 49 128
dev_cmp /dev/mapper/fm model.img || fail "the device differs from the model after fills without memory"
note "32 merged fills without memory (bio or a page) copied instead; with memory back, merged again"
kill "$pid"
wait_until "cowd exits" gone "$pid"
dmsetup remove fm
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
