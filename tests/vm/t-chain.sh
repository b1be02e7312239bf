# Chains: golden image -> template -> guests.  A template is a dm-cow
# device over the golden image, served read-only once it is made; guests
# are dm-cow devices whose base is the template's device, one store of each
# format.  Each guest reads the golden image with the template's changes
# and its own; none sees another's; template and golden image never
# change.  Then the top store is merged into the one below: with the guests
# gone and the template writable, `cowctl merge GUEST /dev/mapper/TEMPLATE
# --in-place` writes the guest's changes through dm-cow into the template's
# store (refused while another guest still uses the template), and the
# template's store merged over the golden image gives the guest's content.
. ./lib.sh

make_base golden.img 16M 3
golden_sum=$(sha golden.img)

# The template: changes made once, then served read-only.
track tpl
cowctl create tpl golden.img tpl.cow --format packed >/dev/null
cp golden.img tpl-model.img
cow-pattern random /dev/mapper/tpl tpl-model.img 40 7 2 262144 || fail "writes to the template failed"
cowctl remove tpl
cowctl create tpl golden.img tpl.cow --read-only >/dev/null
dd if=/dev/zero of=/dev/mapper/tpl bs=4k count=1 oflag=direct status=none 2>/dev/null &&
	fail "a write to the read-only template succeeded"
dev_cmp /dev/mapper/tpl tpl-model.img || fail "the template reads wrong"
tpl_sum=$(sha tpl-model.img)

# Guests over the template, one per store format.
i=0
for fmt in packed uml qcow2; do
	i=$((i + 1))
	track g$i
	cowctl create g$i /dev/mapper/tpl g$i.$fmt --format $fmt >/dev/null
	cp tpl-model.img g$i-model.img
	cow-pattern random /dev/mapper/g$i g$i-model.img 30 $((20 + i)) 2 131072 ||
		fail "g$i ($fmt): writes failed"
done
for i in 1 2 3; do
	dev_cmp /dev/mapper/g$i g$i-model.img || fail "g$i reads wrong (another's changes, or the template's lost)"
done
dev_cmp /dev/mapper/tpl tpl-model.img || fail "a guest's writes reached the template"
note "golden -> template (read-only) -> 3 guests (packed, uml, qcow2): each reads its own content"

# The top store into the one below.
cowctl remove g1
cowctl remove tpl 2>/dev/null && fail "the template was removed while g2 and g3 use it"
cowctl remove g3
qemu-img compare -f qcow2 -F raw g3.qcow2 g3-model.img >/dev/null ||
	fail "qemu-img compare: g3's qcow2 store over the template differs from g3's content"
cowctl merge g3.qcow2 --out g3-merged.img >/dev/null
cmp g3-merged.img g3-model.img || fail "g3's store merged over the template differs"
cowctl remove tpl 2>/dev/null && fail "the template was removed while g2 uses it"
cowctl remove g2
cowctl remove tpl
cowctl create tpl golden.img tpl.cow >/dev/null
cowctl create g2 /dev/mapper/tpl g2.uml >/dev/null
cowctl merge g1.packed /dev/mapper/tpl --in-place >merge.txt 2>&1 &&
	fail "merged into the template while g2 used it"
has "in use\|used by" merge.txt || fail "the refused merge does not say why: $(cat merge.txt)"
cowctl remove g2
cowctl merge g1.packed /dev/mapper/tpl --in-place >/dev/null || fail "merge into the template failed"
dev_cmp /dev/mapper/tpl g1-model.img || fail "the template does not read as g1 after the merge"
cowctl remove tpl
cowctl check tpl.cow golden.img >/dev/null || fail "the template's store does not check clean"
cowctl merge tpl.cow golden.img --out flat.img >/dev/null
cmp flat.img g1-model.img || fail "the template's store over the golden image is not g1's content"
[ "$(sha golden.img)" = "$golden_sum" ] || fail "the golden image changed"
note "g1 merged into the template's store (refused while g2 used the template); template store over golden == g1"
