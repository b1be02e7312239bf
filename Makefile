# dm-cow: top-level build.  See README.md.
#
#   make            module (for KVER), cowd, cowctl, plugins, test helpers
#   make check      every test: host unit tests, then the VM tests
#   make demo       the demo, in a VM
#   make install    install programs, plugins, module and manual pages
#   make deb        Debian packages dm-cow-dkms and dm-cow in build/deb/

KVER ?= $(shell scripts/kver 2>/dev/null)
PREFIX ?= /usr/local
DESTDIR ?=
PLUGINDIR ?= $(PREFIX)/lib/dm-cow/plugins
UNITDIR ?= /etc/systemd/system
B := build

CC ?= cc
WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation -Wshadow -Wstrict-prototypes
CFLAGS ?= -O2 -g
CFLAGS += $(WARN) -std=gnu11 -D_GNU_SOURCE -Iinclude -Ilib -Idaemon -fPIC
CFLAGS += -DCOW_PLUGIN_DIR='"$(PLUGINDIR)"'
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# Which files make what:
#   lib/        libdmcow-store: what plugins may call (include/cow-store.h),
#               built once, linked into cowd, cowctl and every plugin
#   plugins/    one store format each (include/cow-plugin.h)
#   daemon/     COWD_SRC make cowd, COWCTL_SRC make cowctl, DAEMON_COMMON both
#   kernel/     the dm-cow module (include/dm-cow-proto.h: its protocol)
LIB_SRC := lib/store.c lib/store-grow.c lib/blkdev.c lib/crc32c.c
LIBA := $(B)/lib/libdmcow-store.a
DAEMON_COMMON := daemon/log.c daemon/proto.c daemon/plugin-loader.c
COWD_SRC := daemon/cowd.c daemon/server.c daemon/space.c daemon/store-lock.c daemon/image-lock.c daemon/table.c daemon/reload.c daemon/dmdev.c $(DAEMON_COMMON)
COWCTL_SRC := daemon/cowctl.c daemon/cowctl-args.c daemon/cowctl-resize.c daemon/run-status.c daemon/cowctl-store.c daemon/cowctl-inspect.c daemon/cowctl-convert.c daemon/progress.c daemon/image-lock.c daemon/offline.c daemon/signature.c daemon/keyval.c \
	daemon/store-check.c daemon/store-unused.c daemon/loopdev.c daemon/dmdev.c $(DAEMON_COMMON)
PLUGINS := uml packed qcow2
HELPERS := cow-pattern cow-hostile log-replay cow-failnth cow-ctlfuzz

.PHONY: all module programs plugins helpers check unit-test vm-test checkpatch demo check-packages bench bench-store install deb clean deps debug-kernel \
	fuzz fuzz-check

all: programs plugins helpers $(if $(KVER),module)

deps:
	scripts/install-deps

programs: $(B)/bin/cowd $(B)/bin/cowctl
plugins: $(PLUGINS:%=$(B)/plugins/%.so)
helpers: $(HELPERS:%=$(B)/test-bin/%) $(B)/test-plugins/flaky.so

$(B)/lib/%.o: lib/%.c $(wildcard lib/*.h include/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_SRC:lib/%.c=$(B)/lib/%.o)
	rm -f $@
	ar rcs $@ $^

$(B)/bin/cowd: $(COWD_SRC) $(LIBA) $(wildcard daemon/*.h include/*.h lib/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(COWD_SRC) $(LIBA) -lev -ldevmapper -ldl -lpthread

$(B)/bin/cowctl: $(COWCTL_SRC) $(LIBA) $(wildcard daemon/*.h include/*.h lib/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(COWCTL_SRC) $(LIBA) -ldevmapper -lblkid -ljson-c -ldl

# Tests and fuzzers compile the library's sources themselves, with their
# sanitizers.
PLUGIN_LIB := $(LIB_SRC)
$(B)/plugins/%.so: plugins/%.c $(LIBA) $(wildcard include/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -o $@ $< $(LIBA)

$(B)/test-bin/%: tests/helpers/%.c $(wildcard include/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< -lpthread

# Plugins that only tests load (cowd --plugin-dir / $COWD_PLUGIN_DIR).
$(B)/test-plugins/%.so: tests/plugins/%.c $(wildcard include/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -o $@ $< -ldl

# kernel/ builds on its own (as DKMS builds it: the protocol header is found
# through $(src)/../include).  kbuild on 6.1 writes its objects next to the
# sources, so each kernel version builds in its own copy of kernel/ and
# include/.
KDIR := $(B)/kernel/$(KVER)
KBUILD_DIR ?= /lib/modules/$(KVER)/build
KSRC := $(wildcard kernel/*.c kernel/*.h) kernel/Kbuild include/dm-cow-proto.h
module: $(KDIR)/dm-cow.ko
$(KDIR)/dm-cow.ko: $(KSRC) $(wildcard $(KBUILD_DIR)/Module.symvers)
	@test -e $(KBUILD_DIR)/Makefile || { echo "no kernel build tree for $(KVER): make deps" >&2; exit 1; }
	@mkdir -p $(KDIR)/kernel $(KDIR)/include
	@cp -p $(filter kernel/%,$(KSRC)) $(KDIR)/kernel/
	@cp -p include/dm-cow-proto.h $(KDIR)/include/
	$(MAKE) -C $(KBUILD_DIR) M=$(CURDIR)/$(KDIR)/kernel W=1 modules 2>&1 | tee $(KDIR)/build.log
	@! grep -q 'warning:' $(KDIR)/build.log || { echo "module build has warnings" >&2; exit 1; }
	@cp $(KDIR)/kernel/dm-cow.ko $@

$(B)/systemd/cowd@.service: systemd/cowd@.service.in
	@mkdir -p $(@D)
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' $< >$@

# ---- tests ----------------------------------------------------------------
UNIT_TESTS := test-proto test-uml test-cowctl-args test-table test-packed test-packed-journal test-packed-crash \
	test-qcow2 test-qcow2-refcount test-plugin-api test-keyval test-image-lock
UNIT_BIN := $(UNIT_TESTS:%=$(B)/unit/%)

$(B)/unit/test-proto: tests/unit/test-proto.c daemon/proto.c daemon/log.c tests/unit/check.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

$(B)/unit/test-uml: tests/unit/test-uml.c plugins/uml.c lib/store.c daemon/log.c lib/blkdev.c tests/unit/check.h \
		tests/unit/sh.h tests/unit/record.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^) -Wl,--wrap=pwrite_full,--wrap=fdatasync

$(B)/unit/test-cowctl-args: tests/unit/test-cowctl-args.c daemon/cowctl-args.c daemon/log.c tests/unit/check.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

$(B)/unit/test-packed: tests/unit/test-packed.c plugins/packed.c lib/store.c lib/crc32c.c tests/unit/check.h \
		tests/unit/runs.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

$(B)/unit/test-packed-journal: tests/unit/test-packed-journal.c plugins/packed.c lib/store.c lib/crc32c.c \
		tests/unit/check.h tests/unit/record.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^) \
		-Wl,--wrap=pwrite_full,--wrap=fdatasync,--wrap=pread_full

$(B)/unit/test-packed-crash: tests/unit/test-packed-crash.c plugins/packed.c lib/store.c lib/crc32c.c \
		tests/unit/check.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^) -Wl,--wrap=pwrite_full,--wrap=fdatasync

$(B)/unit/test-qcow2: tests/unit/test-qcow2.c plugins/qcow2.c $(PLUGIN_LIB) tests/unit/check.h tests/unit/sh.h \
		tests/unit/runs.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

# Records the plugin's writes and syncs to replay power cuts.
$(B)/unit/test-qcow2-refcount: tests/unit/test-qcow2-refcount.c plugins/qcow2.c $(PLUGIN_LIB) tests/unit/check.h tests/unit/sh.h tests/unit/record.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^) -Wl,--wrap=pwrite_full,--wrap=fdatasync

# The example plugin of dm-cow-plugin(3), compiled from the manual page itself.
$(B)/example/flat.c: man/dm-cow-plugin.3
	@mkdir -p $(@D)
	sed -n '/^\/\* flat.c: cc/,/^\.EE/p' $< | sed '$$d; s/\\-/-/g; s/\\e/\\/g' >$@

$(B)/example/flat.so: $(B)/example/flat.c include/cow-plugin.h
	$(CC) $(CFLAGS) -shared -o $@ $<

$(B)/unit/test-plugin-api: tests/unit/test-plugin-api.c daemon/plugin-loader.c lib/store.c daemon/log.c lib/blkdev.c tests/unit/check.h $(B)/example/flat.so
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^) -ldl

$(B)/unit/test-keyval: tests/unit/test-keyval.c daemon/keyval.c tests/unit/check.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

$(B)/unit/test-image-lock: tests/unit/test-image-lock.c daemon/image-lock.c tests/unit/check.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

$(B)/unit/test-table: tests/unit/test-table.c daemon/table.c lib/store.c tests/unit/check.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Itests/unit -o $@ $(filter %.c,$^)

# cowctl's offline commands are tested on the host with a sanitized build.
unit-test: $(UNIT_BIN) programs plugins $(B)/fuzz/make-seed-packed
	tests/run-unit $(UNIT_BIN)
	tests/check-systemd-unit
	tests/check-install
	$(MAKE) B=$(B)/asan CC="$(CC) $(SAN)" programs plugins
	COWCTL_BUILD=$(abspath $(B)/asan) tests/check-cowctl-map
	COWCTL_BUILD=$(abspath $(B)/asan) tests/check-cowctl-convert
	COWCTL_BUILD=$(abspath $(B)/asan) tests/check-cowctl-repair

vm-test: all
	tests/run-vm

# ---- fuzzing (libFuzzer: clang) ------------------------------------------
# Harnesses for each plugin (fuzz-store.c linked with it) and for cowctl's
# command line.  make fuzz explores for FUZZ_TIME seconds each from a random
# seed; make check (fuzz-check) replays the seeds and tests/fuzz/regress,
# then FUZZ_RUNS inputs from a fixed seed: the same verdict on every run.
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_RUNS ?= 10000
FUZZ_CFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Iinclude -Ilib -Idaemon -Wall -Wextra -Werror \
	-Wno-unused-parameter -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZERS := $(PLUGINS:%=fuzz-%) $(PLUGINS:%=fuzz-cowd-%) fuzz-cowctl-args
F := $(B)/fuzz

$(F)/fuzz-cowctl-args: tests/fuzz/fuzz-cowctl-args.c daemon/cowctl-args.c daemon/log.c $(wildcard daemon/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)

# cowd's message handling (server.c, included by the harness) over a plugin.
FUZZ_COWD_SRC := daemon/space.c daemon/store-lock.c daemon/image-lock.c daemon/table.c daemon/reload.c daemon/dmdev.c daemon/log.c daemon/proto.c \
	daemon/plugin-loader.c lib/blkdev.c lib/store.c lib/store-grow.c lib/crc32c.c
$(F)/fuzz-cowd-%: tests/fuzz/fuzz-cowd.c daemon/server.c plugins/%.c $(FUZZ_COWD_SRC) $(wildcard include/*.h daemon/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz-cowd.c plugins/$*.c $(FUZZ_COWD_SRC) \
		-lev -ldevmapper -ldl -lpthread

$(F)/fuzz-%: tests/fuzz/fuzz-store.c plugins/%.c $(PLUGIN_LIB) $(wildcard include/*.h daemon/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)

$(F)/make-seed-%: tests/fuzz/make-seed.c plugins/%.c $(PLUGIN_LIB) $(wildcard include/*.h daemon/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(filter %.c,$^)

$(F)/seeds/.made: tests/fuzz/make-corpus $(PLUGINS:%=$(F)/make-seed-%)
	tests/fuzz/make-corpus $(F)
	@touch $@

fuzz: $(FUZZERS:%=$(F)/%) $(F)/seeds/.made
	tests/run-fuzz $(F) $(FUZZ_TIME) $(FUZZERS)

fuzz-check: $(FUZZERS:%=$(F)/%) $(F)/seeds/.made
	tests/run-fuzz $(F) --runs $(FUZZ_RUNS) $(FUZZERS)

checkpatch:
	scripts/checkpatch kernel/*.c kernel/*.h

# The lockdep + KASAN kernel the VM tests also run on; built once per
# machine and cached outside the clone (see scripts/debug-kernel).
debug-kernel: deps
	scripts/debug-kernel >/dev/null

check: deps
	$(MAKE) all
	$(MAKE) checkpatch
	$(MAKE) unit-test
	tests/check-deb
	$(MAKE) fuzz-check
	$(MAKE) debug-kernel
	$(MAKE) vm-test

# The Debian packages installed and used under systemd in VMs (6.1, 6.12);
# CI runs it after check.
check-packages: deps
	$(MAKE) all
	tests/check-packages

demo: deps
	$(MAKE) all
	scripts/demo

# Performance against dm-linear, dm-snapshot and dm-thin (not part of check),
# after the stores' own figures on the host (bench-store).
bench: deps bench-store $(B)/bench/dm-reload-time
	$(MAKE) all
	scripts/bench

# Commit latency of a packed store growing to a million mappings.
bench-store: $(B)/bench/packed-commit
	$(B)/bench/packed-commit 1048576 255 $(B)/bench

$(B)/bench/packed-commit: tests/bench/packed-commit.c plugins/packed.c $(LIBA) $(wildcard include/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(filter %.c,$^) $(LIBA)

# The suspend window of a reload of any device (dm-linear's is the floor).
$(B)/bench/dm-reload-time: tests/bench/dm-reload-time.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< -ldevmapper

install: programs plugins $(LIBA) $(B)/systemd/cowd@.service
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man3 $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(UNITDIR)
	install -m 755 $(B)/bin/cowd $(B)/bin/cowctl $(DESTDIR)$(PREFIX)/sbin/
	install -m 644 $(PLUGINS:%=$(B)/plugins/%.so) $(DESTDIR)$(PLUGINDIR)/
	install -m 644 man/cowd.8 man/cowctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 man/dm-cow-plugin.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 include/cow-plugin.h include/cow-store.h $(DESTDIR)$(PREFIX)/include/
	install -d $(DESTDIR)$(PREFIX)/lib
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(B)/systemd/cowd@.service $(DESTDIR)$(UNITDIR)/
	if [ -n "$(KVER)" ]; then \
		$(MAKE) module && \
		install -D -m 644 $(KDIR)/dm-cow.ko $(DESTDIR)/lib/modules/$(KVER)/updates/dm-cow.ko && \
		{ [ -n "$(DESTDIR)" ] || depmod $(KVER); }; \
	fi

deb:
	scripts/make-deb

clean:
	rm -rf $(B)
