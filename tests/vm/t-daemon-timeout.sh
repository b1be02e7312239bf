# With no daemon, first writes wait; with daemon_timeout=<ms> they fail with
# EIO after about that long, while reads and I/O to mapped chunks go on, and
# a daemon that attaches later serves new writes.  Bad values are refused.
. ./lib.sh

make_base base.img 8M 7
truncate -s 16M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)

track to
dmsetup create to --table "0 16384 cow to $B $C 64 1 daemon_timeout=1500"
dmsetup table to | has "1 daemon_timeout=1500$" || fail "TABLE does not show the feature: $(dmsetup table to)"
cmp <(head -c 1M base.img) <(dd if=/dev/mapper/to bs=1M count=1 iflag=direct status=none) ||
	fail "reads of unwritten chunks need no daemon"
start=$(date +%s%N)
if dd if=/dev/zero of=/dev/mapper/to bs=4k count=1 seek=10 oflag=direct status=none 2>err.txt; then
	fail "a first write succeeded with no daemon"
fi
ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -qi "input/output error" err.txt || fail "expected EIO, got: $(cat err.txt)"
[ $ms -ge 1400 ] && [ $ms -lt 8000 ] || fail "failed after $ms ms, want about 1500"
[ "$(dm_status to timed_out)" -ge 1 ] || fail "timed_out not counted"
[ "$(dm_status to pending)" -eq 0 ] || fail "the failed fault is still pending"
note "first write without a daemon failed after $ms ms"

cowd -f to 2>cowd.log &
track_pid $!
wait_attached to
cp base.img model.img
cow-pattern random /dev/mapper/to model.img 50 5 1 65536 || fail "writes with a daemon"
cmp /dev/mapper/to model.img || fail "data differs"
dmsetup remove to

# Without the feature a first write waits for a daemon, however long.
track wt
truncate -s 16M cow2.img
C2=$(loop cow2.img)
dmsetup create wt --table "0 16384 cow wt $B $C2 64"
dd if=/dev/zero of=/dev/mapper/wt bs=4k count=1 seek=3 oflag=direct status=none &
writer=$!
sleep 3
kill -0 $writer 2>/dev/null || fail "a first write without a daemon did not wait"
[ "$(dm_status wt pending)" -eq 1 ] || fail "expected one pending fault"
cowd -f wt 2>cowd2.log &
track_pid $!
wait $writer || fail "the waiting write failed once a daemon came"
dmsetup remove wt

for v in 0 abc -5 86400001 ""; do
	if dmsetup create bad --table "0 16384 cow bad $B $C 64 1 daemon_timeout=$v" 2>/dev/null; then
		track bad
		fail "daemon_timeout=$v accepted"
	fi
done
dmesg | has "Invalid daemon_timeout" || fail "no reason for a bad daemon_timeout"
