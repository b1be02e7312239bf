# A base on network storage: nbd-server serves the base read-only on
# loopback, dm-cow layers over /dev/nbdN.  When the server goes away,
# reads of unmodified chunks fail with EIO and nothing hangs, while chunks
# the store holds still read and write; when it comes back the device works
# again with nothing lost.
#   1. qemu-nbd as the client (its NBD client reconnects by itself, and
#      fails requests after reconnect-delay): the server is killed, then
#      started again.
#   2. nbd-client (the kernel's client, -t timeout): the server stops
#      answering; a read fails once the timeout has passed.  (nbd-client
#      cannot reconnect a device that is held open, as dm holds its base:
#      for a base that must survive server restarts, use 1.)
. ./lib.sh

command -v nbd-server >/dev/null || fail "nbd-server is not installed (scripts/install-deps)"
command -v nbd-client >/dev/null || fail "nbd-client is not installed (scripts/install-deps)"
modprobe nbd
ip link set lo up
mkdir -p /run/lock				# qemu-nbd -c keeps its socket there

make_base base.img 16M 5
base_sum=$(sha base.img)
cat >nbd.conf <<EOF
[generic]
	listenaddr = 127.0.0.1
	port = 10809
[base]
	exportname = $WORK/base.img
	readonly = true
EOF
server_up() {
	nbd-server -C "$WORK/nbd.conf" -p "$WORK/nbd.pid"
	# (it forks: its port takes connections once its pid file is written)
	wait_until "nbd-server started" test -s nbd.pid
}
server_gone() { ! pgrep -x nbd-server >/dev/null; }
at_cleanup 'pkill -CONT -x nbd-server; pkill -x nbd-server'

# reads CHUNK: O_DIRECT read of a 4 KiB block of a chunk of /dev/mapper/$dev
# into got.bin; block_of FILE CHUNK: the same block of a file.
CH=65536
reads() { dd if="/dev/mapper/$dev" of=got.bin bs=4k skip=$(($1 * 16 + 1)) count=1 iflag=direct status=none 2>err.txt; }
block_of() { dd if="$1" bs=4k skip=$(($2 * 16 + 1)) count=1 status=none; }
# writes CHUNK OFFSET LEN: O_DIRECT write of LEN fresh bytes at OFFSET in
# CHUNK, to the device; the model takes them if it succeeds.
writes() {
	head -c "$3" /dev/urandom >w.bin
	dd if=w.bin of="/dev/mapper/$dev" bs="$3" seek=$((($1 * CH + $2) / $3)) count=1 \
		oflag=direct conv=notrunc status=none 2>err.txt || return 1
	dd if=w.bin of=model.img bs="$3" seek=$((($1 * CH + $2) / $3)) count=1 conv=notrunc status=none
}
reloads() { cowctl status "$dev" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads"])'; }

# --- 1. qemu-nbd: the server is killed and comes back -------------------
server_up
qemu-nbd -c /dev/nbd0 -r --image-opts "driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port=10809,file.export=base,file.reconnect-delay=5"
at_cleanup 'qemu-nbd -d /dev/nbd0'
cmp /dev/nbd0 base.img || fail "/dev/nbd0 does not read as the base"
dev=nq
track $dev
truncate -s 16M store.img
cowctl create $dev /dev/nbd0 store.img --no-daemon >/dev/null
cowd --pidfile /run/dm-cow/$dev.pid --log-file /run/dm-cow/$dev.log --reload-interval 0.5 $dev
cp base.img model.img
for c in 0 1 2 3; do writes $c 0 $CH || fail "write to chunk $c: $(cat err.txt)"; done
writes 10 4096 4096 || fail "partial write to chunk 10: $(cat err.txt)"
dev_cmp /dev/mapper/$dev model.img || fail "the device differs from the model before the outage"

pkill -x nbd-server
wait_until "nbd-server gone" server_gone
reads 100 && fail "a read of an unmodified chunk succeeded with the server gone"
has "Input/output error" err.txt || fail "the read failed, but not with EIO: $(cat err.txt)"
for c in 1 10; do
	reads $c || fail "chunk $c, which the store holds, did not read: $(cat err.txt)"
	block_of model.img $c | cmp - got.bin || fail "chunk $c reads wrong during the outage"
done
writes 1 8192 4096 || fail "a rewrite of a mapped chunk failed during the outage: $(cat err.txt)"
before=$(reloads)
writes 20 0 $CH || fail "a whole-chunk first write (no copy) failed during the outage: $(cat err.txt)"
writes 30 4096 4096 && fail "a first write that needs the base's data succeeded with the server gone"
has "Input/output error" err.txt || fail "the first write failed, but not with EIO: $(cat err.txt)"
[ "$(dm_status $dev copy_errors)" -ge 1 ] || fail "no failed copy counted"
heard_of_copy() { has "could not read chunk 30 from the base .*check the base device" /run/dm-cow/$dev.log; }
wait_until "cowd hearing of the failed copy, blaming the base" heard_of_copy
reloaded() { [ "$(reloads)" -gt "$before" ]; }
wait_until "a reload during the outage" reloaded
[ "$(dm_status $dev daemon)" = attached ] || fail "cowd left during the outage"
note "server killed: unmodified chunks EIO, mapped ones read and write, whole-chunk first write ok, copy failed with EIO, cowd reloaded"

server_up
serves_again() { reads 100; }
wait_until "reads of the base after the server came back" serves_again
writes 30 4096 4096 || fail "the first write failed after the server came back: $(cat err.txt)"
dev_cmp /dev/mapper/$dev model.img || fail "the device differs from the model after the outage"
cowctl remove $dev
cowctl check store.img /dev/nbd0 >check.txt || fail "the store does not check clean: $(cat check.txt)"
cowctl merge store.img /dev/nbd0 --out merged.img >/dev/null
cmp merged.img model.img || fail "the store merged over the base differs from the model"
qemu-nbd -d /dev/nbd0 >/dev/null
note "server back: qemu-nbd reconnected, device == model, store clean, merge == model"

# --- 2. nbd-client: the server stops answering --------------------------
nbd-client -N base -t 5 127.0.0.1 10809 /dev/nbd1 >/dev/null
at_cleanup 'nbd-client -d /dev/nbd1'
dev=nk
track $dev
truncate -s 0 store.img
truncate -s 16M store.img
cowctl create $dev /dev/nbd1 store.img >/dev/null
cp base.img model.img
writes 0 0 $CH || fail "nbd-client: write to chunk 0: $(cat err.txt)"
pkill -STOP -x nbd-server
reads 100 && fail "nbd-client: a read succeeded while the server did not answer"
has "Input/output error" err.txt || fail "nbd-client: the read failed, but not with EIO: $(cat err.txt)"
reads 0 || fail "nbd-client: chunk 0, which the store holds, did not read: $(cat err.txt)"
block_of model.img 0 | cmp - got.bin || fail "nbd-client: chunk 0 reads wrong during the outage"
cowctl remove $dev
pkill -CONT -x nbd-server
nbd-client -d /dev/nbd1 >/dev/null
note "nbd-client: server stopped: unmodified chunks EIO after the timeout, mapped ones read, device removed cleanly"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
