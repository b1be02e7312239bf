# A flush (fsync) and a FUA write do not complete before the daemon has
# committed the chunk's mapping: with a commit timer of an hour, the UML
# bitmap on disk has the chunk's bits right after fsync or a O_DSYNC write
# returns, and not before.
. ./lib.sh

make_base base.img 16M 7
truncate -s 32M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
track ff
dmsetup create ff --table "0 32768 cow ff $B $C 128"
cowd -f --format uml --no-reload --commit-interval 3600 ff 2>cowd.log &
track_pid $!
wait_attached ff

# UML layout for a 16 MiB base: bitmap at 8192, 16 bytes per 64 KiB chunk.
bits() {
	od -An -tu1 -j $((8192 + 16 * $1)) -N1 cow.img | tr -d ' '
}
commits=$(dm_status ff commits)

dd if=/dev/zero of=/dev/mapper/ff bs=4k seek=$((3 * 16)) count=1 oflag=direct status=none
sleep 1
[ "$(bits 3)" = 0 ] || fail "chunk 3 committed without a flush (commit timer is an hour)"
[ "$(dm_status ff commits)" = "$commits" ] || fail "a commit happened without a flush"
sync /dev/mapper/ff
[ "$(bits 3)" = 255 ] || fail "fsync returned before chunk 3 was committed"
[ "$(dm_status ff commits)" -gt "$commits" ] || fail "no commit counted for the fsync"
note "fsync: committed"

dd if=/dev/zero of=/dev/mapper/ff bs=4k seek=$((5 * 16)) count=1 oflag=direct,dsync status=none
[ "$(bits 5)" = 255 ] || fail "an O_DSYNC (FUA) write returned before its chunk was committed"
note "O_DSYNC write: committed"

# An empty flush with nothing to commit passes straight through.
c=$(dm_status ff commits)
sync /dev/mapper/ff
[ "$(dm_status ff commits)" = "$c" ] || fail "a flush with nothing new caused a commit"

# A commit asked for by message.
dmsetup message ff 0 commit
sleep 0.5
[ "$(dm_status ff commits)" -gt "$c" ] || fail "dmsetup message commit did nothing"
dmsetup message ff 0 frobnicate 2>/dev/null && fail "an unknown message was accepted"

# Writes from several processes then fsync: all of them committed.
writers=()
for k in 8 9 10 11; do
	dd if=/dev/zero of=/dev/mapper/ff bs=4k seek=$((k * 16 + 3)) count=1 oflag=direct status=none &
	writers+=($!)
done
wait "${writers[@]}"
sync /dev/mapper/ff
for k in 8 9 10 11; do
	[ "$(bits $k)" = 255 ] || fail "chunk $k not committed by the fsync after it"
done
dmsetup remove ff
