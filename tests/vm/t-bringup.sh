# Bringing a device up over a store that holds data, the safe way the
# README gives (dmsetup create --notable; dmsetup load; cowd): a reader in
# the window before cowd serves cannot see the base's bytes where the store
# has others, and once cowd returns the device is live with the store's
# data.  The old way (dmsetup create with the table, then cowd) still works.
. ./lib.sh

make_base base.img 16M 7
base_sum=$(sha base.img)
# A store with data: chunks 2 and 7 (16 KiB chunks) rewritten.
track bu
cowctl create bu base.img bu.cow --chunk 16k >/dev/null
: >pat.bin
for c in 2 7; do
	cow-pattern put pat.bin 0 $((c * 32)) 32 23 1
	dd if=pat.bin of=/dev/mapper/bu bs=16k seek=$c count=1 oflag=direct conv=notrunc status=none
done
sync /dev/mapper/bu
cowctl remove bu
holds() {	# holds DEV CHUNK: the chunk has the store's data
	cow-pattern check "$1" $(($2 * 16384)) 16384 23 1
}

B=$(loop -r base.img)
C=$(loop bu.cow)
table="0 $(blockdev --getsz "$B") cow bu $B $C 32"
dmsetup create bu --notable
dmsetup load bu --table "$table"
# The window: the group exists (its control device too), the device has no
# live table, so a reader gets nothing at all, never the base's chunk 2.
[ -e /dev/dm-cow/bu ] || fail "no control device for a loaded table"
node=/dev/dm-$(dmsetup info -c --noheadings -o minor bu)
[ -b "$node" ] || fail "no block device node $node in the window"
dd if="$node" of=window.bin bs=16k skip=2 count=1 iflag=direct status=none 2>/dev/null || true
[ ! -s window.bin ] || fail "a reader saw data before cowd served the group"
cowd --pidfile /run/dm-cow/bu.pid --log-file /run/dm-cow/bu.log bu ||
	fail "cowd could not serve a loaded, not yet resumed device"
dmsetup info bu | has 'State: *ACTIVE' || fail "cowd returned but the device is not live"
for c in 2 7; do holds /dev/mapper/bu $c || fail "chunk $c: not the store's data after bring-up"; done
cmp -n 32768 base.img /dev/mapper/bu || fail "chunks never written differ from the base"
pid=$(cat /run/dm-cow/bu.pid)
dmsetup remove bu
wait_until "cowd leaving once its device is removed" gone "$pid"
note "safe bring-up: nothing readable before cowd, the store's data after"

# The old way still works (it is only unsafe in the window before cowd).
dmsetup create bu --table "$table"
cowd --pidfile /run/dm-cow/bu.pid --log-file /run/dm-cow/bu.log bu
for c in 2 7; do holds /dev/mapper/bu $c || fail "chunk $c lost (old bring-up)"; done
pid=$(cat /run/dm-cow/bu.pid)
dmsetup remove bu
wait_until "cowd leaving once its device is removed" gone "$pid"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
