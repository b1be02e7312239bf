# Guests served from the host: User-Mode Linux guests boot at once, each
# from its own dm-cow device over one base root image (packed, UML COW and
# qcow2 stores in turn); each changes its disk, boots again and finds its
# changes and nobody else's; the base never changes; every store holds what
# its device read, and checks clean (scripts/uml-guests, which make demo
# runs too).  Eight guests, on Debian's default kernel only: they take
# four minutes or more under TCG, their dm-cow paths are those every other
# test runs on each kernel (several groups at once: t-chain), and on the
# debug kernel UML, which makes a ptrace call per guest system call, does
# not even boot in ten minutes under lockdep and KASAN.
. ./lib.sh

if [ "$(uname -r)" != "$(kver)" ]; then
	echo "eight UML guests run on the default kernel, $(kver), only"
	exit 77
fi
command -v linux.uml >/dev/null || fail "linux.uml is missing (user-mode-linux; scripts/install-deps)"
uml-guests 8 >out.txt 2>&1 || { tail -n 40 out.txt; fail "uml-guests 8 failed"; }
note "$(grep "guests: boot log" out.txt | sed 's/^ *//')"
note "$(grep "stores: .* KiB on disk" out.txt | sed 's/^ *//')"
