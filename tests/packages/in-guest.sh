#!/bin/bash
# Runs as systemd's service in a vm-run --systemd guest (tests/check-packages):
# the packages as an admin uses them.  dpkg -i dm-cow and dm-cow-dkms; DKMS
# builds the module for the booted kernel; modprobe loads it; cowctl create
# --no-daemon and cowd@NAME under systemd serve a device (data checked by
# content across a stop, a crash and systemd's restart); cowctl remove leaves
# the unit stopped; dpkg --purge leaves nothing behind.
# Usage: in-guest.sh DEBDIR   (disks: /dev/vda the base, /dev/vdb the store)
set -euo pipefail
debdir=$1
k=$(uname -r)
# The packages' programs, not the tree's (vm-run puts those first on PATH).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
fail() {
	echo "FAIL ($k): $*" >&2
	journalctl -b --no-pager -n 40 -u 'cowd@*' >&2 2>/dev/null || true
	exit 1
}
step() { echo "== $*"; }
# Wait (at most 120 s: a net for hangs, not a verdict) until "$@" succeeds.
wait_for() {
	local i
	for i in $(seq 600); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}
prop() { systemctl show -P "$1" cowd@pk.service; }
[ -b /dev/vda ] && [ -b /dev/vdb ] || fail "needs two disks, /dev/vda and /dev/vdb"
[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is not systemd (vm-run --systemd)"

step "dpkg -i dm-cow dm-cow-dkms"
# DKMS builds for the booted kernel and the newest installed one; under TCG
# each build takes minutes, and the other kernel has its own boot of this
# test: hide it (the root is an overlay: the host's /boot is untouched).
for c in /boot/config-*; do
	[ "$c" = "/boot/config-$k" ] || rm -f "$c"
done
dpkg -i "$debdir"/dm-cow_*_amd64.deb "$debdir"/dm-cow-dkms_*_all.deb >/tmp/dpkg.log 2>&1 ||
	{ cat /tmp/dpkg.log; fail "dpkg -i failed"; }
dkms status -m dm-cow -k "$k" | grep ': installed' >/dev/null ||
	{ cat /tmp/dpkg.log; dkms status; fail "DKMS did not build and install the module for $k"; }
ko=$(modinfo -k "$k" -n dm-cow) || fail "modinfo finds no dm-cow for $k"
case $ko in /lib/modules/"$k"/updates/*) ;; *) fail "the module is at $ko, not in updates/" ;; esac
[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$k" ] || fail "$ko is not built for $k"
echo "  DKMS built $ko"

step "modprobe dm-cow"
modprobe dm-cow || fail "modprobe dm-cow failed"
dmsetup targets | grep -q '^cow ' || fail "no cow target after modprobe"
[ "$(command -v cowctl)" = /usr/sbin/cowctl ] || fail "cowctl is $(command -v cowctl)"

step "cowctl create --no-daemon, systemctl start cowd@pk"
head -c 32M /dev/urandom >/dev/vda
base_sum=$(sha256sum </dev/vda)
cowctl create pk /dev/vda /dev/vdb --format packed --no-daemon >/tmp/create.out 2>&1 ||
	{ cat /tmp/create.out; fail "cowctl create --no-daemon failed"; }
[ ! -e /run/dm-cow/pk.pid ] || fail "create --no-daemon started a daemon"
# Type=forking: systemctl returns once cowd serves the group.
systemctl start cowd@pk || fail "systemctl start cowd@pk failed"
[ "$(prop ActiveState)" = active ] || fail "cowd@pk is $(prop ActiveState) after start"
pid=$(prop MainPID)
[ "$pid" -gt 0 ] && [ "$(cat /run/dm-cow/pk.pid)" = "$pid" ] ||
	fail "systemd's MainPID $pid is not the pidfile's $(cat /run/dm-cow/pk.pid 2>/dev/null)"
[ "$(readlink /proc/"$pid"/exe)" = /usr/sbin/cowd ] || fail "the unit runs $(readlink /proc/"$pid"/exe)"
[ "$(blockdev --getsize64 /dev/mapper/pk)" = $((32 << 20)) ] || fail "the device is not live"

# 16 chunks' worth of first writes, some partial: the daemon allocates.
head -c 1M /dev/urandom >/tmp/data
dd if=/tmp/data of=/dev/mapper/pk bs=4k seek=1000 oflag=direct status=none
sync /dev/mapper/pk
cmp <(dd if=/dev/mapper/pk bs=4k skip=1000 count=256 iflag=direct status=none) /tmp/data ||
	fail "read back differs"
# cowd reloads the table to make the new chunks linear: udev must keep
# /dev/mapper/pk through that (a resume without a udev cookie drops it).
reloads() { cowctl status pk --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads"])'; }
reloaded() { [ "$(reloads)" -ge 1 ]; }
wait_for reloaded || fail "cowd did not reload the table"
udevadm settle
[ -b /dev/mapper/pk ] || fail "/dev/mapper/pk is gone after cowd's reload ($(reloads) reloads)"
echo "  served by cowd $pid under systemd; 1 MiB written and read back; /dev/mapper/pk kept through $(reloads) reload(s)"

step "systemctl stop: cowd commits and exits; start again: the data is there"
systemctl stop cowd@pk
[ "$(prop ActiveState)" = inactive ] || fail "cowd@pk is $(prop ActiveState) after stop"
systemctl start cowd@pk
cmp <(dd if=/dev/mapper/pk bs=4k skip=1000 count=256 iflag=direct status=none) /tmp/data ||
	fail "read back after a restart differs"

step "a crash (SIGKILL): systemd starts cowd again"
pid=$(prop MainPID)
restarts=$(prop NRestarts)
systemctl kill -s KILL cowd@pk
wait_for sh -c "[ \"\$(systemctl show -P NRestarts cowd@pk)\" = $((restarts + 1)) ] &&
	[ \"\$(systemctl show -P ActiveState cowd@pk)\" = active ]" ||
	fail "cowd@pk was not restarted after SIGKILL: $(prop ActiveState)/$(prop SubState)"
[ "$(prop MainPID)" != "$pid" ] || fail "the same cowd after a restart"
dd if=/tmp/data of=/dev/mapper/pk bs=4k seek=4000 oflag=direct status=none
cmp <(dd if=/dev/mapper/pk bs=4k skip=4000 count=256 iflag=direct status=none) /tmp/data ||
	fail "a write after the restart reads back different"
echo "  restarted after SIGKILL: new cowd $(prop MainPID)"

step "cowctl remove: the unit stops and stays stopped"
cowctl remove pk || fail "cowctl remove failed"
# The main process exited; systemd has settled once the unit is no longer
# deactivating.  A restart on the way would show as activating/auto-restart.
settled() { [ "$(prop ActiveState)" != deactivating ]; }
wait_for settled || fail "cowd@pk stays deactivating"
[ "$(prop ActiveState)/$(prop SubState)" = inactive/dead ] ||
	fail "after cowctl remove, cowd@pk is $(prop ActiveState)/$(prop SubState), want inactive/dead"
[ ! -e /dev/mapper/pk ] || fail "/dev/mapper/pk is still there"
cowctl check /dev/vdb /dev/vda >/tmp/check.out 2>&1 || { cat /tmp/check.out; fail "the store does not check clean"; }
mapped=$(cowctl info /dev/vdb /dev/vda --json | sed -n 's/.*"chunks_mapped": *\([0-9]*\).*/\1/p')
[ "${mapped:-0}" -ge 32 ] || fail "the store maps ${mapped:-no} chunks, want at least 32"
[ "$(sha256sum </dev/vda)" = "$base_sum" ] || fail "the base changed"
echo "  store checks clean with $mapped chunks mapped; base unchanged"

step "modprobe -r, dpkg --purge: nothing left"
modprobe -r dm-cow || fail "modprobe -r dm-cow failed"
dpkg --purge dm-cow dm-cow-dkms >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "dpkg --purge failed"; }
left=$( { ls -d /usr/sbin/cowd /usr/sbin/cowctl /usr/lib/dm-cow /lib/systemd/system/cowd@.service \
	/usr/src/dm-cow-* /var/lib/dkms/dm-cow 2>/dev/null
	find /lib/modules -name 'dm-cow.ko*' -path '*/updates/*' 2>/dev/null; } || true)
[ -z "$left" ] || fail "left after purge: $left"
systemctl cat cowd@pk >/dev/null 2>&1 && fail "systemd still knows cowd@.service"
echo "  purged: no programs, plugins, unit, module source or module left"
echo "packages ok on $k"
