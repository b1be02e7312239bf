# A write that reaches a chunk the store maps before cowd has loaded the
# store (a device made live with `dmsetup create` before cowd starts): the
# kernel refuses cowd's LOAD of that chunk (a fault is pending) and cowd
# answers the fault instead.  The chunk must keep what was written to it
# before, with the new write on top; the plugin must not hand out a fresh
# location that the kernel fills from the base.  For each store format.
. ./lib.sh

make_base base.img 16M 21
base_sum=$(sha base.img)
sector=$((5 * 128))		# chunk 5 of 64 KiB chunks

# put FILE SECTOR COUNT GEN: write COUNT pattern sectors at SECTOR to the device.
put() {
	cow-pattern put pat.bin 0 "$2" "$3" 21 "$4"
	dd if=pat.bin of="$1" bs=512 count="$3" seek="$2" oflag=direct conv=notrunc status=none
}
holds() {	# holds SECTOR COUNT GEN
	cow-pattern check /dev/mapper/ew $(($1 * 512)) $(($2 * 512)) 21 "$3"
}
chunk_holds_both() {
	holds $sector 8 1 && holds $((sector + 8)) 8 2 && holds $((sector + 16)) 112 1
}

one_fault_pending() {
	[ "$(dm_status ew pending)" = 1 ]
}

for fmt in packed uml qcow2; do
	: >pat.bin
	track ew
	cowctl create ew base.img "ew.$fmt" --format "$fmt" >/dev/null
	put /dev/mapper/ew $sector 128 1
	sync /dev/mapper/ew
	chunk=$(dmsetup table ew | awk '$3 == "cow" { print $7; exit }')
	[ "$chunk" = 128 ] || fail "$fmt: cowctl made $chunk-sector chunks; the test wants 128"
	cowctl remove ew
	# Room for a fresh cluster, so that the old bug shows as lost data.
	[ $fmt != qcow2 ] || truncate -s +4M "ew.$fmt"

	B=$(loop -r base.img)
	S=$(loop "ew.$fmt")
	dmsetup create ew --table "0 $(blockdev --getsz "$B") cow ew $B $S 128"
	put /dev/mapper/ew $((sector + 8)) 8 2 &
	writer=$!
	wait_until "the write faults" one_fault_pending
	cowd --no-reload --pidfile /run/dm-cow/ew.pid --log-file /run/dm-cow/ew.log ew
	wait $writer || fail "$fmt: the early write failed: $(cat /run/dm-cow/ew.log)"
	chunk_holds_both || fail "$fmt: chunk 5 lost what was written before cowd loaded the store"
	sync /dev/mapper/ew

	pid=$(cat /run/dm-cow/ew.pid)
	kill "$pid"
	wait_until "cowd exits" gone "$pid"
	dmsetup remove ew
	losetup -d "$S" "$B"
	cowctl create ew base.img "ew.$fmt" --format "$fmt" >/dev/null
	chunk_holds_both || fail "$fmt: chunk 5 differs after the device was built anew"
	cmp -n $((sector * 512)) base.img /dev/mapper/ew || fail "$fmt: chunks never written differ"
	cowctl remove ew
	[ $fmt != qcow2 ] || qemu-img check -q "ew.$fmt" || fail "qemu-img check: $(qemu-img check "ew.$fmt")"
	note "$fmt: the early write landed on the chunk's data"
done
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
