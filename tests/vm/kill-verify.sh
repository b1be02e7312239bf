# Second boot of the QEMU-kill test: the device again over the same disks;
# every epoch up to $4 (the last the host saw acknowledged) must be there,
# and the store must pass cowctl check.
set -eu
dmsetup create kq --table "0 $(blockdev --getsz /dev/vda) cow kq /dev/vda /dev/vdb 128"
mkdir -p /run/dm-cow
cowd --pidfile /run/dm-cow/kq.pid --log-file /run/dm-cow/kq.log kq
cow-pattern verify-epochs /dev/mapper/kq "$1" 7 "$4" "$2" "$3"
pid=$(cat /run/dm-cow/kq.pid)
dmsetup remove kq
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
# Exit 4: slots handed out whose mappings the cut lost (leaks, no harm).
cowctl check /dev/vdb /dev/vda || [ $? -eq 4 ]
