# First boot of the QEMU-kill test (tests/run-vm): a dm-cow device over
# /dev/vda (base) and /dev/vdb (a blank store: cowd makes it packed), and
# the epoch workload, until the host kills QEMU.  Each "epoch N durable"
# line is printed after that epoch's fsync returned.
set -eu
dmsetup create kq --table "0 $(blockdev --getsz /dev/vda) cow kq /dev/vda /dev/vdb 128"
mkdir -p /run/dm-cow
cowd --pidfile /run/dm-cow/kq.pid --log-file /run/dm-cow/kq.log kq
echo "writer: started"
cow-pattern epochs /dev/mapper/kq "$1" 1000000 "$2" "$3"
