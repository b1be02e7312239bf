# A failing CoW device fails exactly the affected I/O, says so, and works
# again when the fault goes away: a copy that fails fails its write (and
# cowd hears of it); a commit that fails fails the flush that waited for it,
# the group reports "failing", and cowd goes on serving.  After a failed
# sync what reached the device is unknown, so flushes fail until cowd is
# restarted; the new cowd reads the store from the device, the kernel
# replays every mapping to it, and its commits work.  The CoW device, and
# the base, are dm devices whose tables are switched between linear and
# error.  cowd's
# commit timer is off (an hour): only the test's flushes ask for commits.
. ./lib.sh

make_base base.img 16M 11
base_sum=$(sha base.img)
truncate -s 16M store.img
B=$(loop -r base.img)
S=$(loop store.img)
size=$(blockdev --getsz "$S")
track cowdev
dmsetup create cowdev --table "0 $size linear $S 0"
bsize=$(blockdev --getsz "$B")
track basedev
dmsetup create basedev --readonly --table "0 $bsize linear $B 0"
switch_table() {	# NAME SECTORS DEV linear|error
	local table="0 $2 linear $3 0"
	[ "$4" = error ] && table="0 $2 error"
	dmsetup suspend "$1"
	dmsetup load "$1" --table "$table"
	dmsetup resume "$1"
}
set_cowdev() { switch_table cowdev "$size" "$S" "$1"; }
set_basedev() { switch_table basedev "$bsize" "$B" "$1"; }
track se
dmsetup create se --table "0 $bsize cow se /dev/mapper/basedev /dev/mapper/cowdev 128"
cowd --no-reload --commit-interval 3600 --pidfile /run/dm-cow/se.pid --log-file /run/dm-cow/se.log se
pid=$(cat /run/dm-cow/se.pid)
: >pat.bin

# put CHUNK GEN: write 8 sectors of pattern generation GEN into CHUNK
# (sectors 8-15 of the 128-sector chunk), with O_DIRECT.
put() {
	local sector=$(($1 * 128 + 8))
	cow-pattern put pat.bin 0 "$sector" 8 99 "$2"
	dd if=pat.bin of=/dev/mapper/se bs=4096 count=1 seek=$((sector / 8)) oflag=direct conv=notrunc status=none
}
holds() {
	cow-pattern check /dev/mapper/se $((($1 * 128 + 8) * 512)) 4096 99 "$2"
}

# 1. A copy that fails fails its write, and only that.
set_cowdev error
put 3 1 2>/dev/null && fail "a write whose copy failed succeeded"
[ "$(dm_status se copy_errors)" = 1 ] || fail "copy_errors is $(dm_status se copy_errors), want 1: $(dmsetup status se); $(cat /run/dm-cow/se.log)"
kill -0 "$pid" || fail "cowd died of a failed copy"
heard_of_copy() { has "could not copy chunk 3 .*check the CoW device" /run/dm-cow/se.log; }
wait_until "cowd hearing of the failed copy, blaming the CoW device" heard_of_copy
set_cowdev linear
put 3 2 || fail "the write failed after the CoW device came back"
holds 3 2 || fail "chunk 3 does not hold what was written"
note "failed copy: its write failed, the next one worked"

# 1b. A write of a whole fresh chunk is its fill (no copy; on a granted
# location, issued at once).  If it fails, it fails, the kernel tries a
# copy instead, and that fails too; the chunk stays the base's.
dd if=/dev/urandom of=chunk.bin bs=64k count=1 status=none
granted() { [ "$(sed -n 's/^granted=//p' /run/dm-cow/se.status 2>/dev/null)" -gt 0 ] 2>/dev/null; }
wait_until "cowd granting locations" granted
set_cowdev error
dd if=chunk.bin of=/dev/mapper/se bs=64k seek=7 count=1 oflag=direct conv=notrunc \
	status=none 2>/dev/null && fail "a whole-chunk write to a failing CoW device succeeded"
copy_failed_twice() { [ "$(dm_status se copy_errors)" = 2 ]; }
wait_until "the copy after the failed whole-chunk write" copy_failed_twice
heard_of_copy7() { has "could not copy chunk 7 .*check the CoW device" /run/dm-cow/se.log; }
wait_until "cowd hearing of chunk 7's failed copy, blaming the CoW device" heard_of_copy7
set_cowdev linear
cmp -s -n 65536 -i $((7 * 65536)):$((7 * 65536)) /dev/mapper/se base.img ||
	fail "chunk 7 does not read as the base after its failed write"
dd if=chunk.bin of=/dev/mapper/se bs=64k seek=7 count=1 oflag=direct conv=notrunc status=none ||
	fail "the whole-chunk write failed after the CoW device came back"
cmp -s -n 65536 -i 0:$((7 * 65536)) chunk.bin /dev/mapper/se ||
	fail "chunk 7 does not hold the whole-chunk write"
note "failed whole-chunk write: it failed, the copy after it too, the next one worked"

# 1c. A first write whose read of the base chunk fails fails, and only it;
# the chunk stays the base's.
set_basedev error
put 9 1 2>/dev/null && fail "a write whose read of the base failed succeeded"
[ "$(dm_status se copy_errors)" = 3 ] || fail "copy_errors is $(dmsetup status se), want 3"
heard_of_base() { has "could not read chunk 9 from the base .*check the base device" /run/dm-cow/se.log; }
wait_until "cowd hearing of the failed read, blaming the base" heard_of_base
set_basedev linear
cmp -s -n 65536 -i $((9 * 65536)):$((9 * 65536)) /dev/mapper/se base.img ||
	fail "chunk 9 does not read as the base after its failed write"
put 9 2 || fail "the write failed after the base came back"
holds 9 2 || fail "chunk 9 does not hold what was written"
note "failed read of the base: its write failed, the next one worked"

# 2. A commit that fails fails the flush that waited for it.
put 5 1 || fail "a first write failed"
set_cowdev error
sync /dev/mapper/se 2>/dev/null && fail "a flush succeeded although its commit failed"
dmsetup status se | has ' failing' || fail "dmsetup status does not say failing: $(dmsetup status se)"
[ "$(dm_status se commit_errors)" -ge 1 ] || fail "commit_errors not counted"
kill -0 "$pid" || fail "cowd died of a failed commit"
has "cannot commit the store" /run/dm-cow/se.log || fail "cowd did not say why the commit failed"
has "until cowd is restarted" /run/dm-cow/se.log || fail "cowd did not say what to do next"
has "restart_needed=1" /run/dm-cow/se.status || fail "the status file does not say restart_needed=1"
cowctl status se | has "until cowd is restarted" || fail "cowctl status does not say to restart cowd: $(cowctl status se)"
cowctl status se --json | has '"restart_needed": true' || fail "cowctl status --json: $(cowctl status se --json)"
set_cowdev linear
put 6 1 || fail "a first write failed after the CoW device came back"
sync /dev/mapper/se 2>/dev/null && fail "a flush succeeded after a failed sync, without a restart"
kill "$pid"
wait_until "cowd exits" gone "$pid"
cowd --no-reload --commit-interval 3600 --pidfile /run/dm-cow/se.pid --log-file /run/dm-cow/se.log se
pid=$(cat /run/dm-cow/se.pid)
sync /dev/mapper/se || fail "a flush failed after cowd was restarted"
dmsetup status se | has ' failing' && fail "still failing after a good commit: $(dmsetup status se)"
note "failed commit: the flush failed, cowd kept serving, after a restart commits worked"

# Everything acknowledged is there, also after the device is built anew.
for c in 3:2 5:1 6:1 9:2; do holds "${c%:*}" "${c#*:}" || fail "chunk ${c%:*} lost its data"; done
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
dmsetup remove se
dmsetup create se --table "0 $bsize cow se /dev/mapper/basedev /dev/mapper/cowdev 128"
cowd --no-reload --commit-interval 3600 --pidfile /run/dm-cow/se.pid --log-file /run/dm-cow/se.log se
for c in 3:2 5:1 6:1 9:2; do holds "${c%:*}" "${c#*:}" || fail "chunk ${c%:*} lost its data across a restart"; done
cmp -n $((3 * 65536)) base.img /dev/mapper/se || fail "chunks never written differ from the base"
kill "$(cat /run/dm-cow/se.pid)"
dmsetup remove se
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
