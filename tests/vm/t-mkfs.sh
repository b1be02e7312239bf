# mkfs.ext4 on a dm-cow device, files written and read back, e2fsck -f
# clean, and the base untouched.
. ./lib.sh

truncate -s 96M base.img
mkfs.ext4 -q -F base.img
mkdir mnt
mount -o loop,ro base.img mnt && umount mnt
base_sum=$(sha base.img)
track fs
cowctl create fs base.img fs.cow >/dev/null
mkfs.ext4 -q -F /dev/mapper/fs
mount /dev/mapper/fs mnt
cp -a /usr/share/doc/e2fsprogs mnt/doc
head -c 20M /dev/urandom >mnt/blob
want=$(sha mnt/blob)
umount mnt
e2fsck -f -n /dev/mapper/fs || fail "e2fsck found errors"
mount /dev/mapper/fs mnt
[ "$(sha mnt/blob)" = "$want" ] || fail "file content changed across a remount"
diff -r /usr/share/doc/e2fsprogs mnt/doc || fail "copied tree differs"
umount mnt
cowctl remove fs
cowctl create fs base.img fs.cow >/dev/null
e2fsck -f -n /dev/mapper/fs || fail "e2fsck after re-create"
cowctl remove fs
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
