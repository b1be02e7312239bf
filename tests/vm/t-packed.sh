# The packed store, the default on blank block devices: a CoW device much
# smaller than the base; random writes match the model; sequential first
# writes land in consecutive slots and coalesce; kill -9 of cowd during
# writes loses nothing; a full store fails first writes with ENOSPC, says
# "full", and harms nothing already written; a store for another base is
# refused with the reason.
. ./lib.sh

make_base base.img 64M 7
base_sum=$(sha base.img)
cp base.img model.img
truncate -s 24M small.img			# a small block device for the store
B=$(loop -r base.img)
C=$(loop small.img)
track pk
dmsetup create pk --table "0 131072 cow pk $B $C 128"
cowd --pidfile /run/dm-cow/pk.pid --log-file /run/dm-cow/pk.log --reload-interval 0.5 pk
head -c 8 small.img | has DMCOWPK1 || fail "a blank device did not get the packed format"

dd if=/dev/urandom of=seq.bin bs=1M count=4 status=none
dd if=seq.bin of=/dev/mapper/pk bs=1M seek=40 oflag=direct status=none
dd if=seq.bin of=model.img bs=1M seek=40 conv=notrunc status=none
sync /dev/mapper/pk
sleep 1.5
[ "$(dmsetup table pk | grep -c ' linear ')" -eq 1 ] ||
	fail "4 MiB of sequential first writes should be one linear segment: $(dmsetup table pk | grep -c ' linear ')"

cow-pattern random /dev/mapper/pk model.img 300 41 4 65536 &
workload=$!
for k in 1 2 3; do
	sleep 0.$((RANDOM % 6 + 3))
	restart_cowd pk
done
wait $workload || fail "writes failed across daemon kills"
cmp /dev/mapper/pk model.img || fail "device differs from the model"

# Fill the store: first writes fail with ENOSPC, nothing else is harmed.
if dd if=/dev/zero of=/dev/mapper/pk bs=64k count=1024 oflag=direct status=noxfer 2>err.txt; then
	fail "writing more than the store holds succeeded"
fi
grep -qi "no space" err.txt || fail "expected ENOSPC, got: $(cat err.txt)"
dmsetup status pk | has " full" || fail "dmsetup status does not say full"
cowctl status pk | has FULL || fail "cowctl status does not say full"
done_records=$(sed -n 's/^\([0-9]*\)+0 records out$/\1/p' err.txt)
[ -n "$done_records" ] && [ "$done_records" -lt 1024 ] || fail "dd did not say how far it got: $(cat err.txt)"
dd if=/dev/zero of=model.img bs=64k count="$done_records" conv=notrunc status=none
cmp /dev/mapper/pk model.img || fail "a full store harmed data: device differs from the model"
note "store full after $(mapped_total pk) chunks; the first $done_records chunks of zeros landed"
dmsetup remove pk
wait_pid=$(cat /run/dm-cow/pk.pid 2>/dev/null || true)
while [ -n "$wait_pid" ] && kill -0 "$wait_pid" 2>/dev/null; do sleep 0.05; done

# Another base: refused with the reason.
make_base other.img 64M 8
O=$(loop -r other.img)
track pk2
dmsetup create pk2 --table "0 131072 cow pk2 $O $C 128"
if cowd -f pk2 2>err2.txt; then
	fail "a packed store for another base was accepted"
fi
grep -q "another base" err2.txt || fail "no reason given: $(cat err2.txt)"
note "refused: $(grep -o 'the store was made.*' err2.txt)"
dmsetup remove pk2
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"

# A labelled base (--base-id): recorded at create, checked by cowd and by
# cowctl; a store without a label, or with another, is refused with the
# reason.  reset keeps the label.
cp base.img gold.img
track lb
cowctl create lb gold.img lb.cow --format packed --base-id gold-1 >/dev/null
dd if=/dev/urandom of=/dev/mapper/lb bs=64k count=2 seek=5 oflag=direct status=none
cowctl reset lb >/dev/null
cowctl remove lb
cowctl check lb.cow gold.img --base-id gold-1 >/dev/null || fail "check with the store's own label failed"
if cowctl check lb.cow gold.img --base-id gold-2 2>err3.txt; then
	fail "check accepted another label"
fi
has "labelled 'gold-1', not 'gold-2'" err3.txt || fail "no reason for refusing the label: $(cat err3.txt)"
if cowctl create lb gold.img lb.cow --base-id gold-2 2>err3.txt; then
	fail "cowd served a store made for the base labelled gold-1 as gold-2"
fi
has "gold-1" err3.txt || has "gold-1" /run/dm-cow/lb.log ||
	fail "no reason for refusing the label: $(cat err3.txt)"
cowctl create lb gold.img lb.cow --base-id gold-1 >/dev/null || fail "the right label was refused"
cowctl remove lb
note "base label recorded and checked; another label refused"
