# A store file on a full host filesystem: the first write of a chunk fails
# cleanly (EIO, before the kernel copies anything: no copy error, nothing
# lost), cowd goes on serving, rewrites of mapped chunks still work, and
# first writes work again once there is room.  A sparse UML file (cowd
# allocates each chunk's blocks before it answers MAP) and a qcow2 image
# (which allocates as it grows, with room for its metadata).
. ./lib.sh

make_base base.img 16M 5
base_sum=$(sha base.img)
small=/run/t-full-host.$$
mkdir -p "$small"
mount -t tmpfs -o size=8M tmpfs "$small"
head -c 4096 /dev/urandom >pat.bin

put() {	# put CHUNK: 4 KiB of pat.bin at the start of 64 KiB chunk CHUNK
	dd if=pat.bin of=/dev/mapper/fh bs=4096 seek=$(($1 * 16)) oflag=direct conv=notrunc status=none
}
model_put() {
	dd if=pat.bin of=model.img bs=4096 seek=$(($1 * 16)) conv=notrunc status=none
}

for fmt in uml qcow2; do
	cp base.img model.img
	track fh
	cowctl create fh base.img "$small/fh.cow" --format "$fmt" >/dev/null
	put 0 || fail "$fmt: the first write failed with room on the filesystem"
	model_put 0
	# Fill the filesystem to the last block.
	dd if=/dev/zero of="$small/filler" bs=64k status=none 2>/dev/null || true
	for c in 1 2 3; do
		put "$c" 2>/dev/null && fail "$fmt: a first write succeeded on a full filesystem"
	done
	[ "$(dm_status fh copy_errors)" = 0 ] ||
		fail "$fmt: the kernel's copy hit the full filesystem ($(dm_status fh copy_errors) copy errors)"
	[ "$(dm_status fh daemon)" = attached ] || fail "$fmt: cowd is gone: $(cat /run/dm-cow/fh.log)"
	has "No space left on device" /run/dm-cow/fh.log || fail "$fmt: cowd did not say why: $(cat /run/dm-cow/fh.log)"
	put 0 || fail "$fmt: a rewrite of a mapped chunk failed"
	sync /dev/mapper/fh || fail "$fmt: a flush failed"
	rm "$small/filler"
	for c in 1 2 3; do
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
