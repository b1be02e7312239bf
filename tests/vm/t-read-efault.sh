# A daemon whose read() of the control device faults (EFAULT) loses no
# message: the kernel starts the conversation over and queues a failed
# copy's COPY_FAILED again (it used to be freed, and the daemon never
# learnt that the chunk's write had failed and its location was free).
. ./lib.sh

make_base base.img 8M 3
base_sum=$(sha base.img)
truncate -s 8M store.img
B=$(loop -r base.img)
S=$(loop store.img)
size=$(blockdev --getsz "$S")
half=$((size / 2))
track ef
track ef-cow
printf '0 %s linear %s 0\n%s %s error\n' $half "$S" $half $((size - half)) | dmsetup create ef-cow
dmsetup create ef --table "0 $(blockdev --getsz "$B") cow ef $B /dev/mapper/ef-cow 128"
cow-hostile efault ef ef $half || fail "a message was lost to a faulting read (see above)"
dmsetup remove ef
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
