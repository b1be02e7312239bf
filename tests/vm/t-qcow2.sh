# The qcow2 store, judged by qemu-img: a new image made by cowctl, written
# at random and sequentially (consecutive clusters coalesce into one linear
# segment; the loop device grows as the image fills), passes qemu-img check
# and compares equal to a raw model; across kill -9 of cowd nothing is lost
# and the image stays clean; an overlay made and written by qemu-img/qemu-io
# opens with its clusters (zero clusters read as zeros); cowctl merge and
# check agree; unsupported features are refused by name.
. ./lib.sh

make_base base.img 64M 9
base_sum=$(sha base.img)
cp base.img model.img
track q
cowctl create q base.img q.qcow2 --format qcow2 >/dev/null
qemu-img info -U q.qcow2 | has "backing file: $WORK/base.img" || fail "no backing file in the image"
# QEMU's image locks: while cowd serves the image, QEMU may not write it,
# and qemu-img wants -U (--force-share), as with a running VM.
qemu-io -f qcow2 -c 'write 0 4k' q.qcow2 >lock.txt 2>&1 && fail "qemu-io wrote an image cowd serves"
has 'Failed to get "write" lock' lock.txt || fail "qemu-io was refused, but not for the lock: $(cat lock.txt)"
qemu-img info q.qcow2 >lock.txt 2>&1 && fail "qemu-img info without -U opened an image cowd writes"
has 'lock' lock.txt || fail "qemu-img info failed, but not for the lock: $(cat lock.txt)"
size0=$(stat -c %s q.qcow2)

dd if=/dev/urandom of=seq.bin bs=1M count=4 status=none
dd if=seq.bin of=/dev/mapper/q bs=1M seek=20 oflag=direct status=none
dd if=seq.bin of=model.img bs=1M seek=20 conv=notrunc status=none
cow-pattern random /dev/mapper/q model.img 300 17 4 262144 &
workload=$!
for k in 1 2; do
	sleep 0.$((RANDOM % 6 + 3))
	restart_cowd q
done
wait $workload || fail "writes failed across daemon kills"
cmp /dev/mapper/q model.img || fail "device differs from the model"
sync /dev/mapper/q
sleep 6	# one periodic reload
dmsetup table q | grep ' linear ' | awk '$2 >= 8192' | has . ||
	fail "4 MiB of sequential first writes did not become one linear segment: $(dmsetup table q | grep linear | head -n 20)"
cowctl status q | has "qcow2" || fail "cowctl status does not name the format"
cowctl remove q
[ "$(stat -c %s q.qcow2)" -gt "$size0" ] || fail "the image never grew"
set +e
qemu-img check q.qcow2 >check.txt 2>&1
status=$?
set -e
[ $status -eq 0 ] || [ $status -eq 3 ] || fail "qemu-img check found corruption: $(cat check.txt)"
qemu-img compare -f qcow2 -F raw q.qcow2 model.img >/dev/null || fail "qemu-img compare: the image differs from the model"
note "after kill -9: qemu-img check: $(grep -c leaked check.txt) leak lines, exit $status"
cowctl check q.qcow2 >/dev/null || [ $? -eq 4 ] || fail "cowctl check: $(cowctl check q.qcow2)"
cowctl merge q.qcow2 --out merged.img >/dev/null
cmp merged.img model.img || fail "cowctl merge of a qcow2 store differs from the model"

# Re-created from the image alone: the same content.
cowctl create q base.img q.qcow2 >/dev/null
cmp /dev/mapper/q model.img || fail "re-created device differs"
cowctl remove q
# Once the device is gone, cowd gives back what the image held for nothing
# (grown in 32 MiB steps, granted ahead): no more disk than up to its end.
end=$(qemu-img check --output=json q.qcow2 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["image-end-offset"])')
[ "$(du -k q.qcow2 | cut -f1)" -le $((end / 1024)) ] ||
	fail "the image uses $(du -k q.qcow2 | cut -f1) KiB of disk, but ends at $((end / 1024)) KiB"
has "given back to the host" /run/dm-cow/q.log || fail "cowd did not say what it gave back"
note "after remove: $(du -k q.qcow2 | cut -f1) KiB on disk, image end $((end / 1024)) KiB, file $(($(stat -c %s q.qcow2) / 1024)) KiB"

# An overlay qemu made and wrote.
cp base.img model2.img
qemu-img create -q -f qcow2 -b "$WORK/base.img" -F raw ov.qcow2
io="-c 'write -P 0xab 128k 64k' -c 'write -z 1M 128k' -c 'write -P 0xcd 3000k 4k'"
eval qemu-io -f qcow2 "$io" ov.qcow2 >/dev/null
eval qemu-io -f raw "$io" model2.img >/dev/null
track ov
# cowd refuses an image QEMU holds for writing (qemu-io, reading commands
# from a FIFO this shell keeps open).
mkfifo qemu-cmds
qemu-io -f qcow2 ov.qcow2 <qemu-cmds >/dev/null 2>qemu-io.err &
holder=$!
exec 3>qemu-cmds
# (probed without taking a lock: qemu-img info would take its own, and
# could make qemu-io's open fail)
qemu_holds() {
	kill -0 $holder 2>/dev/null || fail "qemu-io did not open ov.qcow2: $(cat qemu-io.err)"
	"$HELPERS/qemu-holds-write" ov.qcow2
}
wait_until "qemu-io holding ov.qcow2" qemu_holds
cowctl create ov base.img ov.qcow2 >create.txt 2>&1 && fail "cowctl create served an image qemu-io holds"
grep -rq 'refusing the image' create.txt /run/dm-cow/ 2>/dev/null ||
	fail "cowd's refusal does not say why: $(cat create.txt)"
exec 3>&-
wait $holder || true
note "QEMU's locks: qemu-io refused while cowd served; cowd refused while qemu-io held the image"
cowctl create ov base.img ov.qcow2 >/dev/null
cmp /dev/mapper/ov model2.img || fail "qemu's overlay reads wrong through dm-cow"
[ "$(mapped_total ov)" -eq 4 ] || fail "expected 4 mapped chunks (2 data, 2 zero), got $(mapped_total ov)"
cow-pattern random /dev/mapper/ov model2.img 100 5 2 || fail "writes to qemu's overlay failed"
cowctl remove ov
qemu-img check -q ov.qcow2 || fail "qemu-img check of qemu's overlay after dm-cow wrote it"
qemu-img compare -q -f qcow2 -F raw ov.qcow2 model2.img || fail "qemu's overlay differs from the model"

# Refused by name.
qemu-img create -q -f qcow2 -b "$WORK/base.img" -F raw cz.qcow2
qemu-io -f qcow2 -c 'write -c -P 1 0 64k' cz.qcow2 >/dev/null
if cowctl create cz base.img cz.qcow2 2>err.txt; then
	track cz
	fail "an image with compressed clusters was accepted"
fi
has "compressed clusters" err.txt || fail "no reason: $(cat err.txt)"
note "refused: $(grep -o 'qcow2 image uses.*' err.txt | head -n1)"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
