# A DROP of a chunk that a suspended table still serves through a cow
# target is refused (EBUSY): resuming that same table must not turn the
# chunk's reads into stale reads of the base.
. ./lib.sh

make_base base.img 8M 7
base_sum=$(sha base.img)
truncate -s 16M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
track ds
dmsetup create ds --table "0 16384 cow ds $B $C 64"
out=0
cow-hostile drop-suspended ds ds || out=$?
# Never leave the device suspended behind a failed check.
dmsetup info ds | has 'State: *SUSPENDED' && dmsetup resume ds
[ $out -eq 0 ] || fail "a DROP of a chunk the suspended table serves was mishandled (see above)"
[ "$(dm_status ds daemon)" = detached ] || fail "the client's close did not detach"
# What the client wrote: chunk 3 (32 KiB) all 0xc5; the rest is the base.
cp base.img model.img
head -c 32768 /dev/zero | tr '\0' '\305' |
	dd of=model.img bs=32768 seek=3 conv=notrunc status=none
dev_cmp /dev/mapper/ds model.img || fail "the device differs from the model (chunk 3 written, the rest base)"
dmsetup remove ds
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
