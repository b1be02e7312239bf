# Several writers hit the same fresh chunk at once while its copy is in
# flight, and readers read it meanwhile: every sector read is either the
# base's or the new data, and the end result matches the model.
. ./lib.sh

make_base base.img 16M 7
base_sum=$(sha base.img)
cp base.img model.img
track sc
cowctl create sc base.img sc.cow --chunk 64k >/dev/null
cow-pattern samechunk /dev/mapper/sc model.img 65536 10 40 8 4 99 7 ||
	fail "concurrent writers/readers on one chunk"
cmp /dev/mapper/sc model.img || fail "device differs from the model"
n=$(mapped_total sc)
[ "$n" -eq 40 ] || fail "expected 40 mapped chunks, got $n"
[ "$(dm_status sc pending)" -eq 0 ] || fail "faults left pending"
cowctl remove sc
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
