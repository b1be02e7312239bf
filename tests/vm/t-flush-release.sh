# A flush completes once every chunk it depends on is committed, even
# while a later flush waits for more: two first writes, each followed by
# an fsync from another process; the daemon (cow-hostile) commits the first
# chunk only, which must release the first flush and not the second.
. ./lib.sh

make_base base.img 8M 7
base_sum=$(sha base.img)
truncate -s 16M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
track fr
dmsetup create fr --table "0 16384 cow fr $B $C 64"
cow-hostile flush-release fr fr || fail "a flush was held back by a later one, or released too early (see above)"
[ "$(dm_status fr daemon)" = detached ] || fail "the client's close did not detach"
# What the client wrote: chunk 1 (32 KiB) all 0xa1, chunk 2 all 0xa2.
cp base.img model.img
head -c 32768 /dev/zero | tr '\0' '\241' | dd of=model.img bs=32768 seek=1 conv=notrunc status=none
head -c 32768 /dev/zero | tr '\0' '\242' | dd of=model.img bs=32768 seek=2 conv=notrunc status=none
dev_cmp /dev/mapper/fr model.img || fail "the device differs from the model (chunks 1 and 2 written, the rest base)"
dmsetup remove fr
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
