# The pass-through path (issue 10 §3):
# 1. a read of a chunk whose first write waits for the daemon does not
#    wait: no write to it has completed, so it reads the base; once cowd
#    answers, the write completes and reads return it;
# 2. REQ_NOWAIT bios (preadv2/pwritev2 with RWF_NOWAIT on O_DIRECT, what
#    io_uring sends first) are served, not refused with EOPNOTSUPP: reads
#    of unmodified and of mapped chunks, rewrites, first writes (one of a
#    whole chunk);
# 3. the optimal I/O size is the chunk size, also once a reload made
#    chunks linear segments.
. ./lib.sh

make_base base.img 16M 9
base_sum=$(sha base.img)
truncate -s 16M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
size=$(blockdev --getsz "$B")
# 64 KiB chunks
track rp
dmsetup create rp --table "0 $size cow rp $B $C 128"
chunk_is() {	# chunk_is CHUNK FILE: the device's chunk holds FILE's 64 KiB
	dd if=/dev/mapper/rp bs=64k skip="$1" count=1 iflag=direct status=none | cmp -s - "$2"
}
dd if=base.img of=base5.bin bs=64k skip=5 count=1 status=none

# 1. No daemon yet: the first write to chunk 5 waits for one.
: >pat.bin
cow-pattern put pat.bin 0 $((5 * 128 + 8)) 8 31 1
dd if=pat.bin of=/dev/mapper/rp bs=4096 seek=$((5 * 16 + 1)) count=1 oflag=direct conv=notrunc \
	status=none &
writer=$!
pending_one() { [ "$(dm_status rp pending)" = 1 ]; }
wait_until "the first write to wait for a daemon" pending_one
dd if=/dev/mapper/rp of=read5.bin bs=64k skip=5 count=1 iflag=direct status=none &
reader=$!
wait_until "a read of a chunk whose first write waits for the daemon (it must not wait)" gone "$reader"
wait "$reader" || fail "the read of the pending chunk failed"
kill -0 "$writer" 2>/dev/null || fail "the first write completed without a daemon"
pending_one || fail "the fault was answered without a daemon: $(dmsetup status rp)"
cmp -s read5.bin base5.bin || fail "a chunk whose first write has not completed did not read as the base"
note "a read of a chunk waiting for the daemon returned the base at once"
cowd --no-reload --pidfile /run/dm-cow/rp.pid --log-file /run/dm-cow/rp.log rp
wait "$writer" || fail "the first write failed once cowd served"
cp base5.bin want5.bin
dd if=pat.bin of=want5.bin bs=4096 seek=1 count=1 conv=notrunc status=none
chunk_is 5 want5.bin || fail "chunk 5 does not hold the write once cowd answered"
note "once cowd answered, the write completed and reads return it"

# 2. RWF_NOWAIT reads and writes.
python3 - /dev/mapper/rp <<'EOF' || fail "a REQ_NOWAIT bio was refused (see above)"
import mmap, os, sys

fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
base = open("base.img", "rb").read()
buf = mmap.mmap(-1, 4096)


def op(what, off, data=None):
    try:
        if data is None:
            n = os.preadv(fd, [buf], off, os.RWF_NOWAIT)
        else:
            buf[:] = data
            n = os.pwritev(fd, [buf], off, os.RWF_NOWAIT)
    except OSError as e:
        print("%s at %d with RWF_NOWAIT: %s" % (what, off, e.strerror))
        sys.exit(1)
    if n != 4096:
        print("%s at %d with RWF_NOWAIT: %d bytes" % (what, off, n))
        sys.exit(1)


def expect(what, off, want):
    op(what, off)
    if bytes(buf) != want:
        print("%s at %d with RWF_NOWAIT: wrong data" % (what, off))
        sys.exit(1)


C = 65536
expect("read of an unmodified chunk", 9 * C, base[9 * C:9 * C + 4096])
new = bytes([0x5a]) * 4096
op("first write", 11 * C + 8192, new)
expect("read of the chunk it mapped", 11 * C + 8192, new)
expect("read of its copied part", 11 * C, base[11 * C:11 * C + 4096])
newer = bytes([0xa5]) * 4096
op("rewrite of a mapped chunk", 11 * C + 8192, newer)
expect("read of the rewrite", 11 * C + 8192, newer)
# A first write of a whole chunk: its fill, without a copy.
whole = mmap.mmap(-1, C)
whole[:] = bytes([0x3c]) * C
try:
    n = os.pwritev(fd, [whole], 12 * C, os.RWF_NOWAIT)
except OSError as e:
    print("whole-chunk first write with RWF_NOWAIT: %s" % e.strerror)
    sys.exit(1)
if n != C or os.preadv(fd, [whole], 12 * C) != C or bytes(whole) != bytes([0x3c]) * C:
    print("whole-chunk first write with RWF_NOWAIT: %d bytes, or wrong data" % n)
    sys.exit(1)
EOF
note "REQ_NOWAIT: reads, first writes (one of a whole chunk) and a rewrite served"

# 3. The optimal I/O size.
dm=dm-$(dmsetup info -c --noheadings -o minor rp | tr -d " ")
io_opt() { cat /sys/block/"$dm"/queue/optimal_io_size; }
[ "$(io_opt)" = 65536 ] || fail "optimal_io_size is $(io_opt), not the chunk size 65536"
pid=$(cat /run/dm-cow/rp.pid)
kill "$pid"
wait_until "cowd exits" gone "$pid"
# Chunks 20-27 mapped, then a reload makes them a linear segment.
dd if=/dev/urandom of=run.bin bs=64k count=8 status=none
cowd --reload-interval 0 --min-run 1 --pidfile /run/dm-cow/rp.pid --log-file /run/dm-cow/rp.log rp
dd if=run.bin of=/dev/mapper/rp bs=64k seek=20 oflag=direct conv=notrunc status=none
linear_now() { dmsetup table rp | has ' linear '; }
wait_until "a reload making chunks linear segments" linear_now
[ "$(io_opt)" = 65536 ] || fail "optimal_io_size is $(io_opt) after a reload, not 65536"
dd if=/dev/mapper/rp bs=64k skip=20 count=8 iflag=direct status=none | cmp -s - run.bin ||
	fail "chunks 20-27 lost their data in the reload"
note "optimal_io_size is the chunk size, before and after a reload"

pid=$(cat /run/dm-cow/rp.pid)
dmsetup remove rp
wait_until "cowd exits" gone "$pid"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
