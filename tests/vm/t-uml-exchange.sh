# Files exchanged with uml-utilities both ways: a COW file made by
# uml_mkcow (with chunks UML left whole and partly written) opens in cowd
# and reads right; what dm-cow writes, uml_moo merges; a COW file whose
# backing size differs from the base is refused with the reason.
. ./lib.sh

make_base base.img 8M 3
base_sum=$(sha base.img)
uml_mkcow u.cow "$WORK/base.img" >/dev/null
# 8 MiB = 16384 sectors: bitmap at 8192, 2048 bytes; data at 12288.
data_off=12288
cp base.img model.img
# Chunk 4 (64 KiB, sectors 512..639) written whole by "UML".
printf '\377%.0s' $(seq 16) | dd of=u.cow bs=1 seek=$((8192 + 64)) conv=notrunc status=none
cow-pattern put u.cow $((data_off + 512 * 512)) 512 128 5 1
cow-pattern put model.img $((512 * 512)) 512 128 5 1
# Chunk 2 (sectors 256..383): only its first 4 sectors.
printf '\017' | dd of=u.cow bs=1 seek=$((8192 + 32)) conv=notrunc status=none
cow-pattern put u.cow $((data_off + 256 * 512)) 256 4 5 1
cow-pattern put model.img $((256 * 512)) 256 4 5 1

track ux
cowctl create ux base.img u.cow >/dev/null
cmp /dev/mapper/ux model.img || fail "uml_mkcow's file reads wrong through dm-cow"
[ "$(mapped_total ux)" -eq 2 ] || fail "expected 2 mapped chunks from the file, got $(mapped_total ux)"
cow-pattern random /dev/mapper/ux model.img 100 9 2 || fail "writes failed"
cmp /dev/mapper/ux model.img || fail "device differs from the model"
cowctl remove ux
uml_moo u.cow merged.img >/dev/null
cmp merged.img model.img || fail "uml_moo's merge differs from the model"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"

# A base of the wrong size is refused, with the reason.
cp base.img small.img
truncate -s 4M small.img
uml_mkcow w.cow "$WORK/base.img" >/dev/null
if cowctl create uw small.img w.cow 2>err.txt; then
	track uw
	fail "a COW file for another base was accepted"
fi
grep -q "does not match\|but the base has" err.txt || { cat err.txt; fail "no reason given"; }
note "refused: $(grep -o 'UML COW header.*' err.txt | head -n1)"
dmsetup info uw >/dev/null 2>&1 && fail "the refused device was left behind"

# A base file modified after the COW file was made is refused, as UML
# refuses it; --ignore-base-mtime serves it all the same.
uml_mkcow m.cow "$WORK/base.img" >/dev/null
touch -d 2001-01-01 base.img
if cowctl create um base.img m.cow 2>err.txt; then
	track um
	fail "a COW file older than its base's last change was accepted"
fi
has "modified after" err.txt || fail "no reason given: $(cat err.txt)"
track um
cowctl create um base.img m.cow --ignore-base-mtime >/dev/null ||
	fail "--ignore-base-mtime did not serve the file"
cmp /dev/mapper/um base.img || fail "the file served with --ignore-base-mtime reads wrong"
cowctl remove um
true
