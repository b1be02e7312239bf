# Power cuts, simulated with dm-log-writes: every write that reaches the
# CoW device is logged in the order the device made it durable.  An epoch
# workload (writes of generation E, fsync, then a log mark "eE") runs on a
# dm-cow device whose CoW device is the logging one.  Then the log is
# replayed onto a copy of the store's initial image up to every mark and up
# to random entries in between; on each replayed image a new cowd serves
# the device, every write acknowledged before the point must be there
# (cow-pattern verify-epochs), and `cowctl check` passes on the store.
# For the packed store (made by cowd on a blank device), the UML store and
# the qcow2 store (which qemu-img check must find clean or leaking only).
. ./lib.sh

SEED=31
WRITES=24
EPOCHS=10
REGION=$((16 << 20))

make_base base.img 32M 7
base_sum=$(sha base.img)
B=$(loop -r base.img)
modprobe dm-log-writes

# serve NAME STORE_DEVICE: a dm-cow device over the base and the store.
serve() {
	track "$1"
	dmsetup create "$1" --table "0 65536 cow $1 $B $2 128"
	cowd --pidfile "/run/dm-cow/$1.pid" --log-file "/run/dm-cow/$1.log" "$1" ||
		fail "cowd refused the store: $(tail -n 3 "/run/dm-cow/$1.log")"
}

unserve() {
	local pid
	pid=$(cat "/run/dm-cow/$1.pid")
	dmsetup remove "$1"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# check_point IMAGE_AT_POINT EPOCH WHAT
check_point() {
	local dev status
	if [ "$fmt" = qcow2 ]; then
		# qemu-img's verdict on the image as the cut left it: leaks at most.
		set +e
		qemu-img check -q "$1" >qcheck.txt 2>&1
		status=$?
		set -e
		[ $status -eq 0 ] || [ $status -eq 3 ] ||
			fail "$3: qemu-img check exit $status: $(cat qcheck.txt)"
	fi
	cp "$1" point.img
	dev=$(loop point.img)
	serve pc "$dev"
	cow-pattern verify-epochs /dev/mapper/pc $SEED 7 "$2" $WRITES $REGION >verify.txt 2>&1 ||
		fail "$3: $(cat verify.txt)"
	# The control: the verifier must tell this point from the next epoch's.
	if [ "${4:-}" = control ] &&
		cow-pattern verify-epochs /dev/mapper/pc $SEED 7 $(($2 + 1)) $WRITES $REGION >/dev/null 2>&1; then
		fail "$3: the verifier cannot tell epoch $2 from epoch $(($2 + 1))"
	fi
	unserve pc
	losetup -d "$dev"
	# A cut may leave qcow2 clusters or packed slots allocated but unused
	# (exit 4): leaks, which the formats allow; anything else must be clean.
	set +e
	cowctl check point.img base.img >check.txt 2>&1
	status=$?
	set -e
	[ $status -eq 0 ] || { [ "$fmt" != uml ] && [ $status -eq 4 ]; } ||
		fail "$3: cowctl check exit $status: $(cat check.txt)"
}

power_cut() {
	local fmt=$1 n marks=0 last=0 prev=0 idx flags mark k e
	case $fmt in
	packed) truncate -s 16M initial.img ;;	# blank: cowd makes the store
	uml)
		cowctl create mk base.img initial.img --format uml >/dev/null
		cowctl remove mk ;;
	qcow2)
		cowctl create mk base.img initial.img --format qcow2 >/dev/null
		cowctl remove mk
		truncate -s 24M initial.img ;;	# room: log-writes cannot grow
	esac
	cp initial.img real.img
	truncate -s 64M log.img
	R=$(loop real.img)
	L=$(loop log.img)
	track lw
	dmsetup create lw --table "0 $(blockdev --getsz "$R") log-writes $R $L"
	serve pw /dev/mapper/lw
	cow-pattern epochs /dev/mapper/pw $SEED $EPOCHS $WRITES $REGION \
		'dmsetup message lw 0 mark e$EPOCH' >/dev/null || fail "$fmt: the workload failed"
	dmsetup message lw 0 mark end
	unserve pw
	dmsetup remove lw
	losetup -d "$R" "$L"
	log-replay list log.img >entries.txt
	n=$(wc -l <entries.txt)
	[ "$(grep -cE ' M e[0-9]+$' entries.txt)" -eq $EPOCHS ] || fail "$fmt: the log lost marks: $(grep -c . entries.txt) entries, marks: $(grep M entries.txt | tr "\n" " ")"

	# Every mark, replayed incrementally onto one image.
	cp initial.img replay.img
	while read -r idx flags mark; do
		[ "$flags" = M ] && [[ $mark =~ ^e[0-9]+$ ]] || continue
		log-replay replay log.img replay.img "$prev" "$idx"
		prev=$idx
		check_point replay.img "${mark#e}" "$fmt: at mark $mark (entry $idx)" \
			"$([ $marks -eq 0 ] && echo control)"
		marks=$((marks + 1))
	done <entries.txt
	[ $marks -eq $EPOCHS ] || fail "$fmt: checked $marks marks, not $EPOCHS"

	# Random cut points: all acknowledged epochs before the point survive.
	for k in 1 2 3 4 5 6; do
		idx=$((RANDOM % n))
		e=$(head -n "$idx" entries.txt | sed -n 's/^[0-9]* M e\([0-9][0-9]*\)$/\1/p' | tail -n 1)
		cp initial.img replay.img
		log-replay replay log.img replay.img 0 "$idx"
		check_point replay.img "${e:-0}" "$fmt: cut at entry $idx of $n (after epoch ${e:-0})"
	done
	note "$fmt: $n log entries; $marks marks and 6 random cuts verified"
	rm -f real.img log.img replay.img point.img initial.img
}

power_cut packed
power_cut uml
power_cut qcow2
[ "$(sha base.img)" = "$base_sum" ] || fail "the base changed"
