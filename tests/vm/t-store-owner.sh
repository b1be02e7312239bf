# One cowd per store.  Two loop devices over one store file are two
# devices to the kernel, so two groups can be made over one store with raw
# dmsetup; the second group's cowd must refuse it, saying why, rather than
# allocate in a store another daemon writes (the same lock keeps a new cowd
# off a store whose old daemon is still making its last commit).  Once the
# first device is gone, the second cowd serves the store, with the first
# one's data.
. ./lib.sh

make_base base.img 8M 3
truncate -s 8M s.cow
B=$(loop -r base.img)
L1=$(loop s.cow)
L2=$(loop s.cow)
track one
dmsetup create one --table "0 16384 cow one $B $L1 128"
cowd --pidfile /run/dm-cow/one.pid --log-file /run/dm-cow/one.log one
pid1=$(cat /run/dm-cow/one.pid)
cp base.img model.img
cow-pattern random /dev/mapper/one model.img 20 7 1 131072 || fail "writes through the first device failed"
sync /dev/mapper/one

track two
dmsetup create two --table "0 16384 cow two $B $L2 128"
if cowd --pidfile /run/dm-cow/two.pid --log-file /run/dm-cow/two.log two 2>err.txt; then
	fail "a second cowd served a store another cowd serves"
fi
cat err.txt /run/dm-cow/two.log 2>/dev/null >said.txt || true
has "another cowd serves this store" said.txt ||
	fail "the second cowd's refusal does not say why: $(cat said.txt)"
note "refused: $(grep -o 'not serving.*' said.txt | head -n1)"

dmsetup remove one
wait_until "the first cowd exiting" gone "$pid1"
cowd --pidfile /run/dm-cow/two.pid --log-file /run/dm-cow/two.log two ||
	fail "the second cowd did not serve the store once the first was gone: $(tail -n 3 /run/dm-cow/two.log)"
dev_cmp /dev/mapper/two model.img || fail "the store read through the second device differs"
dmsetup remove two
note "once the first device and its cowd were gone, the second served the store with its data"
