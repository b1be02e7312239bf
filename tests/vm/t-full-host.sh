# A store file on a full host filesystem: the first write of a chunk fails
# cleanly (EIO, before the kernel copies anything: no copy error, nothing
# lost), cowd goes on serving, rewrites of mapped chunks still work, and
# first writes work again once there is room.  A sparse UML file (cowd
# allocates each chunk's blocks before it answers MAP) and a qcow2 image
# (which allocates as it grows, with room for its metadata; the clusters
# granted to the kernel in advance have their blocks, and are used first).
. ./lib.sh

make_base base.img 64M 5
base_sum=$(sha base.img)
small=/run/t-full-host.$$
mkdir -p "$small"
mount -t tmpfs -o size=32M tmpfs "$small"
head -c 4096 /dev/urandom >pat.bin

put() {	# put CHUNK: 4 KiB of pat.bin at the start of 64 KiB chunk CHUNK
	dd if=pat.bin of=/dev/mapper/fh bs=4096 seek=$(($1 * 16)) oflag=direct conv=notrunc status=none
}
model_put() {
	dd if=pat.bin of=model.img bs=4096 seek=$(($1 * 16)) conv=notrunc status=none
}

for fmt in uml qcow2; do
	cp base.img model.img
	# Room that comes back later, whatever the store took as it grew.
	dd if=/dev/zero of="$small/ballast" bs=1M count=8 status=none
	track fh
	cowctl create fh base.img "$small/fh.cow" --format "$fmt" >/dev/null
	put 0 || fail "$fmt: the first write failed with room on the filesystem"
	model_put 0
	# Fill the filesystem to the last block.
	dd if=/dev/zero of="$small/filler" bs=64k status=none 2>/dev/null || true
	# Chunks granted in advance (qcow2) have their blocks already: first
	# writes use them, then fail.
	# One process writes pat.bin at chunk 1, 2, ... until a write fails
	# (the model gets the same), and prints that chunk (0: none failed).
	full=$(python3 - /dev/mapper/fh model.img <<'PY'
import mmap, os, sys

dev = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
model = os.open(sys.argv[2], os.O_WRONLY)
buf = mmap.mmap(-1, 4096)
buf[:] = open("pat.bin", "rb").read()
for c in range(1, 1024):
    try:
        os.pwrite(dev, buf, c * 65536)
    except OSError:
        print(c)
        sys.exit(0)
    os.pwrite(model, buf, c * 65536)
print(0)
PY
)
	[ "$full" -gt 0 ] || fail "$fmt: 1023 first writes succeeded on a full filesystem"
	note "$fmt: first writes failed from chunk $full on"
	for c in $((full + 1)) $((full + 2)); do
		put "$c" 2>/dev/null && fail "$fmt: a first write succeeded on a full filesystem"
	done
	[ "$(dm_status fh copy_errors)" = 0 ] ||
		fail "$fmt: the kernel's copy hit the full filesystem ($(dm_status fh copy_errors) copy errors)"
	[ "$(dm_status fh daemon)" = attached ] || fail "$fmt: cowd is gone: $(cat /run/dm-cow/fh.log)"
	has "No space left on device" /run/dm-cow/fh.log || fail "$fmt: cowd did not say why: $(cat /run/dm-cow/fh.log)"
	put 0 || fail "$fmt: a rewrite of a mapped chunk failed"
	sync /dev/mapper/fh || fail "$fmt: a flush failed"
	rm "$small/filler" "$small/ballast"
	for c in $full $((full + 1)) $((full + 2)); do
		put "$c" || fail "$fmt: a first write failed after space came back"
		model_put "$c"
	done
	cmp /dev/mapper/fh model.img || fail "$fmt: the device differs from the model"
	cowctl remove fh
	if [ "$fmt" = qcow2 ]; then
		qemu-img check -q "$small/fh.cow" || fail "qemu-img check: the image is damaged"
	fi
	rm "$small/fh.cow"
	note "$fmt: first writes on a full filesystem failed cleanly; data intact"
done
umount "$small"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
