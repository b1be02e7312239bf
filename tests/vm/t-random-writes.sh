# Random writes of 512 B to 1 MiB, aligned and unaligned, across chunk
# boundaries, from 4 writers at once, compared with a model image; the base
# never changes; removing and re-creating the device keeps every byte; the
# store is a UML COW file uml_moo merges into the same image.
. ./lib.sh

make_base base.img 48M 7
base_sum=$(sha base.img)
cp base.img model.img

for chunk in 64k 4k; do
	rm -f rw.cow
	cp base.img model.img
	track rw
	cowctl create rw base.img rw.cow --chunk $chunk >/dev/null
	cow-pattern random /dev/mapper/rw model.img 400 11 4 || fail "writes failed (chunk $chunk)"
	cmp /dev/mapper/rw model.img || fail "device differs from the model (chunk $chunk)"
	[ "$(mapped_total rw)" -gt 0 ] || fail "no chunk mapped"
	cowctl remove rw
	[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"

	cowctl create rw base.img rw.cow --chunk $chunk >/dev/null
	cmp /dev/mapper/rw model.img || fail "data lost by remove + create (chunk $chunk)"
	cow-pattern random /dev/mapper/rw model.img 200 12 2 || fail "second round failed"
	cmp /dev/mapper/rw model.img || fail "device differs after the second round"
	cowctl remove rw
	note "chunk $chunk: $(stat -c %b rw.cow) blocks used by the store"

	uml_moo rw.cow merged.img >/dev/null
	cmp merged.img model.img || fail "uml_moo's merge differs from the model (chunk $chunk)"
	rm -f merged.img
done
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
