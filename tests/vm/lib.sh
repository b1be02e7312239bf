# Shared by the VM tests (sourced).  Each test runs in its own directory
# under /tmp and cleans up its devices and daemons, even when it fails.
set -euo pipefail

# tests/helpers: the scripts among them run from the source tree.
HELPERS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../helpers" && pwd)
WORK=$(mktemp -d /tmp/vmtest.XXXXXX)
cd "$WORK"
_devices=()
_pids=()
_hooks=()

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

note() {
	echo "  $*"
}

_cleanup() {
	local d p
	# Filesystems a failed test left mounted hold its devices.
	grep -o " $WORK/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r umount -l 2>/dev/null || true
	# A test that failed with a device suspended must not hang on its I/O.
	for d in "${_devices[@]}"; do
		if dmsetup info "$d" 2>/dev/null | has SUSPENDED; then
			dmsetup resume "$d" >/dev/null 2>&1 || true
		fi
	done
	for d in "${_devices[@]}"; do
		if dmsetup info "$d" >/dev/null 2>&1; then
			dmsetup remove --retry "$d" >/dev/null 2>&1 || dmsetup remove --force "$d" >/dev/null 2>&1 || true
		fi
	done
	for p in "${_hooks[@]}"; do
		eval "$p" >/dev/null 2>&1 || true
	done
	for p in "${_pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	losetup -D 2>/dev/null || true
	cd /
	rm -rf "$WORK"
}
trap _cleanup EXIT

# Remember a dm device name so cleanup removes it.
track() {
	_devices+=("$1")
}

track_pid() {
	_pids+=("$1")
}

# at_cleanup CMD: run CMD at cleanup, once the dm devices are gone (before
# the tracked processes are killed).
at_cleanup() {
	_hooks+=("$1")
}

# make_base FILE SIZE SEED: a base image whose every sector is patterned.
make_base() {
	cow-pattern fill "$1" "$2" "$3"
}

# has PATTERN: like grep -q, but reads all its input, so that under
# pipefail the command feeding it never dies of SIGPIPE.
has() {
	grep "$@" >/dev/null
}

sha() {
	sha256sum "$1" | cut -d' ' -f1
}

# dm_status NAME KEY: one counter from the cow target's status line.
dm_status() {
	dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}

# Chunks the group has mapped: in the kernel's tree, or dropped from it
# because a reload made them linear segments.  Both counters from one
# status line: a reload between two reads would count chunks twice.
mapped_total() {
	dmsetup status "$1" | awk '
		!done && / mapped=/ {
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^mapped=/) m = substr($i, 8)
				if ($i ~ /^dropped=/) d = substr($i, 9)
			}
			print m + d
			done = 1
		}'
}

# Wait (up to 10 s) until cowd serves IDENT.
wait_attached() {
	local i
	for i in $(seq 100); do
		[ "$(dm_status "$1" daemon)" = attached ] && return 0
		sleep 0.1
	done
	fail "cowd never attached to $1"
}

# wait_until WHAT CMD...: poll until CMD succeeds.  The two minutes are
# only a hang detector (nothing here is paced by the clock): when they run
# out, the test fails saying WHAT never happened.
wait_until() {
	local what=$1 end=$((SECONDS + 120))
	shift
	until "$@"; do
		if [ $SECONDS -ge $end ]; then
			# A test may define diagnose() to say what it saw.
			if declare -F diagnose >/dev/null; then diagnose >&2; fi
			fail "$what: not after 120 s (hung)"
		fi
		sleep 0.1
	done
}

# gone PID: the process has exited (for wait_until).
gone() {
	! kill -0 "$1" 2>/dev/null
}

# Compare the whole device with a model file, reading the device with
# O_DIRECT so that no page cache can hide what the target returns.
dev_cmp() {
	dd if="$1" iflag=direct bs=1M status=none | cmp - "$2"
}

# Sectors written to a block device (/dev/NAME) since boot.
written() {
	awk '{print $7}' "/sys/block/${1#/dev/}/stat"
}

# A loop device for FILE (read-only with -r); prints its path.
loop() {
	losetup -f --show "$@"
}

# restart_cowd NAME: kill -9 the group's cowd, wait until it is gone, and
# start a new one (reloading often, to mix reloads into the test).
restart_cowd() {
	local pid
	pid=$(cat "/run/dm-cow/$1.pid")
	kill -9 "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	cowd --pidfile "/run/dm-cow/$1.pid" --log-file "/run/dm-cow/$1.log" --reload-interval 0.5 "$1"
}
