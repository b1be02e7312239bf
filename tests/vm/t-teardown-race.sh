# Control-device writes racing the group's teardown: a client that keeps
# writing valid-looking messages (COMMITTED, LOADs, DROPs) while the device
# is removed sees its writes fail with ENODEV (or end of file) and exits;
# nothing oopses (run-all checks the kernel log).  Twenty rounds.
. ./lib.sh

make_base base.img 4M 7
base_sum=$(sha base.img)
truncate -s 4M cow.img
B=$(loop -r base.img)
C=$(loop cow.img)
track tr

# The client's messages are being handled: LOADs have mapped chunks and
# DROPs have been refused while the table is live.
busy() {
	kill -0 "$spam" 2>/dev/null || fail "round $round: the client exited early: $(cat spam.out)"
	[ "$(dm_status tr mapped)" -gt 0 ] && [ "$(dm_status tr rejected)" -gt 0 ]
}
for round in $(seq 20); do
	dmsetup create tr --table "0 8192 cow tr $B $C 64"
	cow-hostile spam tr >spam.out 2>&1 &
	spam=$!
	track_pid $spam
	wait_until "round $round: the client's messages handled" busy
	dmsetup remove --retry tr
	wait_until "round $round: the client noticing the removal" gone "$spam"
	status=0
	wait $spam || status=$?
	[ $status -eq 0 ] || fail "round $round: the client exited with status $status: $(cat spam.out)"
	[ ! -e /dev/dm-cow/tr ] || fail "round $round: the control device outlived its group"
done
note "$(tail -n1 spam.out)"
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
