# cowctl's store commands, by content, for every format:
# check (clean, corrupt, in use), dump (text and JSON agree with the
# device), map and info (agree with dump; qcow2's: tests/check-cowctl-map),
# list, check and status in JSON, merge --out (equal to a raw model; for UML equal to uml_moo's),
# merge --in-place (refused while a device uses the base), reset (refused
# while mounted; afterwards the device reads as the base), create
# --read-only and --base-ro.
. ./lib.sh

make_base base.img 16M 5
base_sum=$(sha base.img)

for fmt in uml packed; do
	cp base.img model.img
	track st
	cowctl create st base.img "st-$fmt.cow" --format "$fmt" >/dev/null
	cow-pattern random /dev/mapper/st model.img 60 13 2 262144 || fail "$fmt: writes failed"
	cmp /dev/mapper/st model.img || fail "$fmt: device differs from the model"
	mapped=$(mapped_total st)
	cowctl status st --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["format"] == sys.argv[1], d
assert d["chunk_bytes"] == 65536 and d["daemon"] == "attached", d
assert d["store_used_bytes"] > 0 and d["store_free_bytes"] > 0, d
' "$fmt" || fail "$fmt: cowctl status --json lacks the format, chunk size or store use"
	cowctl list --json | python3 -c '
import json, sys
l = json.load(sys.stdin)
assert [d["name"] for d in l] == ["st"] and l[0]["format"] == sys.argv[1], l
' "$fmt" || fail "$fmt: cowctl list --json: $(cowctl list --json)"

	# In use: the offline commands refuse.
	if cowctl check "st-$fmt.cow" base.img 2>err.txt; then
		fail "$fmt: check ran on a store a device uses"
	fi
	has "in use" err.txt || fail "$fmt: no reason for refusing: $(cat err.txt)"
	cowctl remove st
	# Slots granted ahead and not used go back to the host with the device.
	[ "$(du -k "st-$fmt.cow" | cut -f1)" -le $((mapped * 64 + 1024)) ] ||
		fail "$fmt: $(du -k "st-$fmt.cow" | cut -f1) KiB on disk for $mapped chunks of 64 KiB"

	cowctl check "st-$fmt.cow" base.img >check.txt || fail "$fmt: check: $(cat check.txt)"
	has "consistent: $mapped chunks mapped" check.txt || fail "$fmt: check says: $(cat check.txt)"
	cowctl dump "st-$fmt.cow" base.img >dump.txt || fail "$fmt: dump failed"
	[ "$(grep -vc '^#' dump.txt)" -eq "$mapped" ] || fail "$fmt: dump lists $(grep -vc '^#' dump.txt) chunks, not $mapped"
	cowctl dump "st-$fmt.cow" base.img --json >dump.json || fail "$fmt: dump --json failed"
	python3 -c '
import json, sys
d = json.load(open("dump.json"))
text = [l.split() for l in open("dump.txt") if not l.startswith("#")]
assert d["format"] == sys.argv[1], d["format"]
assert d["chunks_mapped"] == len(text) == len(d["mappings"])
for m, t in zip(d["mappings"], text):
    assert [m["chunk"], m["offset"], m["cow_offset"]] == [int(x) for x in t], (m, t)
' "$fmt" || fail "$fmt: dump --json disagrees with the text dump"
	# Names are escaped: a store named with quotes and a backslash.
	weird="st \"$fmt\" \\ copy.cow"
	cp "st-$fmt.cow" "$weird"
	cowctl dump "$weird" base.img --json >weird.json || fail "$fmt: dump --json of $weird failed"
	python3 -c '
import json, sys
d = json.load(open("weird.json"))
assert d["store"] == sys.argv[1], d["store"]
' "$weird" || fail "$fmt: dump --json does not escape the store's name: $(head -n 3 weird.json)"
	rm -f "$weird"
	# map: every dumped chunk inside a store extent, at its offset; the
	# extents tile the device; info counts the same chunks.
	cowctl map "st-$fmt.cow" base.img --json >map.json || fail "$fmt: map --json failed"
	cowctl info "st-$fmt.cow" base.img --json >info.json || fail "$fmt: info --json failed"
	python3 -c '
import json, os
d = json.load(open("dump.json"))
m = json.load(open("map.json"))
i = json.load(open("info.json"))
at = 0
for e in m:
    assert e["start"] == at and e["length"] > 0, (e, at)
    at += e["length"]
assert at == os.path.getsize("base.img"), at
store = [e for e in m if e["depth"] == 0 and e["data"]]
for c in d["mappings"]:
    e = [e for e in store if e["start"] <= c["offset"] < e["start"] + e["length"]]
    assert len(e) == 1 and e[0]["offset"] + c["offset"] - e[0]["start"] == c["cow_offset"], (c, e)
assert i["chunks_mapped"] == d["chunks_mapped"] and i["format"] == d["format"], i
' || fail "$fmt: map or info disagrees with dump: $(head -c 600 map.json)"
	# Each dumped chunk's data is where the dump says.
	read -r chunk off cow_off < <(grep -v '^#' dump.txt | sed -n 3p)
	cmp -n 65536 -i "$cow_off:$off" "st-$fmt.cow" model.img ||
		fail "$fmt: chunk $chunk is not at the offset the dump gives"

	cowctl merge "st-$fmt.cow" base.img --out "merged-$fmt.img" >/dev/null || fail "$fmt: merge failed"
	cmp "merged-$fmt.img" model.img || fail "$fmt: merge --out differs from the model"
	if [ "$fmt" = uml ]; then
		uml_moo "st-$fmt.cow" moo.img >/dev/null
		cmp moo.img "merged-$fmt.img" || fail "cowctl merge and uml_moo disagree"
	fi
	if cowctl merge "st-$fmt.cow" base.img --out "merged-$fmt.img" 2>err.txt; then
		fail "$fmt: merge overwrote an existing file"
	fi

	# Damage: a store whose metadata is overwritten is reported corrupt (3).
	cp "st-$fmt.cow" bad.cow
	case $fmt in
	uml) printf '\0\0\0\011' | dd of=bad.cow bs=1 seek=4 conv=notrunc status=none ;;
	packed) dd if=/dev/urandom of=bad.cow bs=1 seek=100 count=8 conv=notrunc status=none ;;
	esac
	set +e
	cowctl check bad.cow base.img >check.txt 2>&1
	status=$?
	set -e
	[ $status -eq 3 ] || fail "$fmt: a damaged store gave exit $status: $(cat check.txt)"
	set +e
	cowctl check bad.cow base.img --json >check.json 2>check.err
	status=$?
	set -e
	[ $status -eq 3 ] && python3 -c '
import json
c = json.load(open("check.json"))
assert c["result"] == "corrupt" and c["problems"] >= 1 and c["first_problem"], c
' || fail "$fmt: check --json of a damaged store (exit $status): $(cat check.json)"
	cowctl check "st-$fmt.cow" base.img --json | python3 -c '
import json, sys
c = json.load(sys.stdin)
assert c["result"] == "clean" and c["chunks_mapped"] == int(sys.argv[1]), c
' "$mapped" || fail "$fmt: check --json of the store"
	note "$fmt: $mapped chunks; check, dump, map, info, merge agree; damage: $(tail -n1 check.txt)"
done

# reset: refused while mounted; afterwards the device is the base again.
cowctl create rs base.img rs.cow --format packed >/dev/null
track rs
mkdir -p mnt
dd if=/dev/urandom of=/dev/mapper/rs bs=64k count=4 seek=10 oflag=direct status=none
if cowctl reset rs 2>/dev/null </dev/null; then :; else fail "reset of an unused device failed"; fi
cmp /dev/mapper/rs base.img || fail "after reset the device is not the base"
[ "$(mapped_total rs)" -eq 0 ] || fail "after reset $(mapped_total rs) chunks are still mapped"
mkfs.ext4 -q /dev/mapper/rs
mount /dev/mapper/rs mnt
if cowctl reset rs 2>err.txt; then
	umount mnt
	fail "reset ran on a mounted device"
fi
has "in use" err.txt || fail "no reason for refusing reset: $(cat err.txt)"
umount mnt
cowctl reset rs >/dev/null || fail "reset after umount failed"
cmp /dev/mapper/rs base.img || fail "after the second reset the device is not the base"

# merge --in-place: refused while a device uses the base; then done.
cp base.img inplace.img
if cowctl merge rs.cow inplace.img --in-place 2>/dev/null; then
	fail "merge ran on a store a device uses"
fi
dd if=/dev/urandom of=/dev/mapper/rs bs=64k count=8 seek=40 oflag=direct status=none
cp base.img want.img
dd if=/dev/mapper/rs of=want.img bs=64k count=8 skip=40 seek=40 conv=notrunc status=none
cowctl remove rs
cowctl merge rs.cow inplace.img --in-place >/dev/null || fail "merge --in-place failed"
cmp inplace.img want.img || fail "merge --in-place gave the wrong content"
B=$(loop -r inplace.img)
if cowctl merge rs.cow inplace.img --in-place 2>err.txt; then
	fail "merge --in-place ran while $B uses the base"
fi
has "in use" err.txt || fail "no reason for refusing: $(cat err.txt)"
losetup -d "$B"

# merge --in-place writes only into the base the user names, and only if
# the store names that base too: an untrusted store must not choose what
# root overwrites.
cp -p base.img other.img	# same mtime: the name check must refuse it
track mm
cowctl create mm base.img mm.cow --format uml >/dev/null
dd if=/dev/urandom of=/dev/mapper/mm bs=64k count=1 seek=3 oflag=direct status=none
cowctl remove mm
if cowctl merge mm.cow --in-place 2>err.txt; then
	fail "merge --in-place wrote into the base the store's header names, unasked"
fi
has "name it" err.txt || fail "no reason for refusing an unnamed base: $(cat err.txt)"
if cowctl merge mm.cow other.img --in-place 2>err.txt; then
	fail "merge --in-place wrote into other.img, which mm.cow was not made over"
fi
has "made over" err.txt || fail "no reason for refusing another base: $(cat err.txt)"
cmp -s other.img base.img || fail "a refused merge changed other.img"
[ "$(sha base.img)" = "$base_sum" ] || fail "a refused merge changed the base"

# --read-only: writes fail, reads work; --base-ro insists on a read-only base.
# rs.cow has mapped chunks, so cowd's start-up reload makes linear
# segments: the reloaded table must stay read-only.
track ro
cowctl create ro base.img rs.cow --read-only >/dev/null
for _ in $(seq 50); do
	dmsetup table ro | has ' linear ' && break
	sleep 0.1
done
dmsetup table ro | has ' linear ' || fail "no start-up reload happened"
dmsetup info ro | has 'READ-ONLY' || fail "the reload made the device writable"
if dd if=/dev/zero of=/dev/mapper/ro bs=4k count=1 oflag=direct status=none 2>/dev/null ||
	dd if=/dev/zero of=/dev/mapper/ro bs=4k count=1 seek=5000 oflag=direct status=none 2>/dev/null; then
	fail "a --read-only device took a write"
fi
cmp /dev/mapper/ro want.img || fail "the read-only device does not read as its store says"
cowctl remove ro
if cowctl create rb base.img rb.cow --base-ro 2>err.txt; then
	track rb
	fail "--base-ro accepted a writable base"
fi
has "writable" err.txt || fail "no reason for refusing --base-ro: $(cat err.txt)"
chmod a-w base.img
track rb
cowctl create rb base.img rb.cow --base-ro >/dev/null || fail "--base-ro refused a read-only base"
cowctl remove rb

# A stale or forged pidfile: remove signals only the group's own cowd.
track pf
cowctl create pf base.img pf.cow >/dev/null
cowd_pid=$(cat /run/dm-cow/pf.pid)
sleep 1000 &
innocent=$!
track_pid $innocent
echo $innocent >/run/dm-cow/pf.pid
cowctl remove pf 2>err.txt || fail "remove failed: $(cat err.txt)"
kill -0 $innocent || fail "cowctl remove signalled pid $innocent, which the pidfile named but is no cowd"
has "not the group's cowd" err.txt || fail "remove did not say it left pid $innocent alone: $(cat err.txt)"
wait_until "the group's cowd exits" gone "$cowd_pid"

# --format is honoured for a blank file and a blank device, not only for a
# file that create makes.
truncate -s 32M blank.img
track bf
cowctl create bf base.img blank.img --format qcow2 >/dev/null
dd if=/dev/urandom of=/dev/mapper/bf bs=64k count=4 oflag=direct status=none
cowctl remove bf
qemu-img check -q blank.img || fail "a blank file with --format qcow2 is no good qcow2 image"
truncate -s 32M blank-dev.img
blank_dev=$(loop blank-dev.img)
track bd
cowctl create bd base.img "$blank_dev" --format uml >/dev/null
dd if=/dev/urandom of=/dev/mapper/bd bs=64k count=4 oflag=direct status=none
cowctl remove bd
out=$(cowctl check "$blank_dev" base.img 2>&1) || fail "cowctl check of the blank device's store: $out"
has " uml " <<<"$out" || fail "a blank device with --format uml is not a UML store: $out"
losetup -d "$blank_dev"

# Zeros at the start do not make a device blank: an iso9660 filesystem
# (its descriptor at 32 KiB) is not formatted without --force.
truncate -s 32M iso.img
printf '\001CD001\001' | dd of=iso.img bs=1 seek=32768 conv=notrunc status=none
iso_sum=$(sha iso.img)
track iso
cowctl create iso base.img iso.img --format uml 2>err.txt && fail "a file holding iso9660 was formatted"
has "iso9660 filesystem" err.txt || fail "create did not say what the file holds: $(cat err.txt)"
has "force" err.txt || fail "create did not say how to go on: $(cat err.txt)"
[ "$(sha iso.img)" = "$iso_sum" ] || fail "the refused file was changed"
! dmsetup info iso >/dev/null 2>&1 || fail "a device was left behind"
cowctl create iso base.img iso.img --format uml --force >/dev/null || fail "--force was refused"
cowctl remove iso
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
