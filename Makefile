# Makefile — builds libsockit, the sockit command and the examples; installs
# the Debian packages the build and the tests need.
#
#   make            build/sockit, build/libsockit.{a,so}, build/examples/*
#   make run        install what is missing, build, run the demo services
#   make test       install what is missing, build with ASan+UBSan, run all tests
#   make soak       a long mixed workload with client faults (SOAK_SECONDS, default 600)
#   make valgrind   integration tests with the server under valgrind memcheck
#   make install PREFIX=/usr/local

CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
SAN      ?= 0

WARN     := -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
# `override` keeps the flags the build needs even when CFLAGS is given on
# the command line (make CFLAGS=-O0).
override CFLAGS += -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) -Iinclude -Isrc
# libssl: the TLS transport (src/tls.c); libcrypto: HMAC-SHA256 and SHA-256
# for the exec and files protocols, certificates and fingerprints;
# libedit: line editing in the chat client (BSD-licensed readline API).
LDLIBS   += -lssl -lcrypto -lpthread
CLI_LIBS := -ledit
# The services' own libraries (chat's Redis client), for what links them;
# never libsockit.so.
SVC_LIBS := -lhiredis
ifeq ($(SAN),1)
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

LIB_SRC  := $(wildcard src/*.c)
CLI_SRC  := $(wildcard cli/*.c)
# The services (services/ and one folder per service) build into an
# internal static library, never installed: the sockit command, the unit
# tests and the fuzzers link it instead of compiling its files again.
SVC_SRC  := $(wildcard services/*.c services/*/*.c)
SVC_HDR  := $(wildcard services/*.h services/*/*.h)
EX_SRC   := $(wildcard examples/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
SVC_OBJ  := $(SVC_SRC:%.c=$(BUILD)/obj/%.o)
SVC_LIB  := $(BUILD)/libsockit-services.a
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)

# Debian packages: what building needs, and what the tests drive sockit with.
BUILD_PKGS := gcc make libc6-dev pkg-config libssl-dev libedit-dev libhiredis-dev
TEST_PKGS  := libcriterion-dev python3 netcat-openbsd socat procps util-linux iproute2 \
              clang libclang-rt-14-dev openssl redis-server redis-tools

.PHONY: all run test deps deps-test install uninstall clean unit integration check-symbols \
        fuzz fuzz-smoke bench bench-quick soak valgrind

all: $(BUILD)/sockit $(BUILD)/libsockit.a $(BUILD)/libsockit.so $(EX_BIN)

# `make` alone is the first command many people type: like run and test, it
# installs missing build packages first (order-only: it never forces a rebuild).
$(BUILD)/obj/%.o: %.c include/sockit.h $(wildcard src/*.h cli/*.h) $(SVC_HDR) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSOCKIT_BUILDING -c $< -o $@

$(BUILD)/libsockit.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libsockit.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libsockit.so.0 $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(SVC_LIB): $(SVC_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/sockit: $(CLI_OBJ) $(SVC_LIB) $(BUILD)/libsockit.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(SVC_LIB) $(BUILD)/libsockit.a $(CLI_LIBS) $(SVC_LIBS) $(LDLIBS)

# Examples use only the public header, as a user's program would.
$(BUILD)/examples/%: examples/%.c include/sockit.h $(BUILD)/libsockit.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS)) $(LDFLAGS) -o $@ $< $(BUILD)/libsockit.a $(LDLIBS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(SVC_LIB) $(BUILD)/libsockit.a
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(SVC_LIB) $(BUILD)/libsockit.a -lcriterion $(SVC_LIBS) $(LDLIBS)

# --- set-up ---------------------------------------------------------------
# Installs the missing packages of a list; as non-root prints the exact line.
define install_pkgs
	@command -v dpkg-query >/dev/null || exit 0; missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "sockit needs these Debian packages; run as root:"; \
	    echo "  apt-get update && apt-get install -y$$missing"; exit 1; \
	  fi; \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing) \
	    || { echo "apt-get install failed for:$$missing"; exit 1; }; \
	fi
endef

deps:
	$(call install_pkgs,$(BUILD_PKGS))

deps-test: deps
	$(call install_pkgs,$(TEST_PKGS))

run: deps
	$(MAKE) all
	$(BUILD)/sockit serve

# --- tests ----------------------------------------------------------------
test: deps-test
	$(MAKE) BUILD=build/san SAN=1 all build/san/unit-tests
	$(MAKE) BUILD=build/san check-symbols
	sh tests/install_check.sh
	$(MAKE) fuzz-smoke
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp build/san/unit-tests --jobs=2
	SOCKIT_BUILD=build/san ASAN_OPTIONS=detect_leaks=1 python3 tests/integration/run.py

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

integration: all
	SOCKIT_BUILD=$(BUILD) python3 tests/integration/run.py

# --- benchmarks (bench/): never part of `make test` -------------
# The paired, pinned comparison against the reference servers; installs
# libuv, libevent, redis-server, iperf3 (benchmark-only dependencies).
bench: all
	$(MAKE) -C bench run

bench-quick: all
	$(MAKE) -C bench quick

# The soak test (not part of `make test`): SOAK_SECONDS of mixed work with
# client faults on every service, then a check that the servers are back to
# their baseline. ASan's quarantine is kept small so that the RSS figures
# it prints say something about sockit, not about the sanitizer.
SOAK_SECONDS ?= 600
soak: deps-test
	$(MAKE) BUILD=build/san SAN=1 all
	SOCKIT_BUILD=build/san SOAK_SECONDS=$(SOAK_SECONDS) \
	  ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=16 python3 tests/soak.py

# The servers of a representative part of the integration suite under
# valgrind memcheck (an optimised build without sanitizers): any error or
# definite/indirect leak makes the server exit 99, which the tests' stop
# check reports. Left out: tests that measure the server's RSS or CPU time
# (valgrind's own memory and slowness would fail them, not sockit), the
# 10,000-connection one (minutes under valgrind), and files' Confinement
# class, which expects openat2: valgrind 3.19 does not know that system
# call, so under it the files service takes its fallback path (which
# ConfinementFallback covers).
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
VALGRIND_TESTS ?= test_echo test_upper_greet test_framing test_streams test_udp test_chat \
                  test_exec.Basics test_exec.Policy test_exec.Auth test_exec.ChildState \
                  test_exec.Lifetimes test_exec.PreAuth test_exec.Interop \
                  test_files.RoundTrip test_files.ConfinementFallback test_files.Resume \
                  test_files.Integrity test_files.DiskFull test_files.Tokens test_files.Errors \
                  test_files.Resources test_faults.Resets test_faults.Signals \
                  test_faults.Timeouts test_faults.MaxConns test_hardening.Counters \
                  test_hardening.Garbage test_hardening.Slowloris test_hardening.Unauth
valgrind: deps-test all
	$(call install_pkgs,valgrind)
	SOCKIT_BUILD=$(BUILD) SOCKIT_SERVER_WRAPPER="$(VALGRIND)" SOCKIT_TEST_TIMEOUT=300 \
	  python3 tests/integration/run.py $(VALGRIND_TESTS)

# Every exported symbol of the shared library carries the sk_ prefix.
check-symbols: $(BUILD)/libsockit.so
	@bad=$$(nm -D --defined-only $(BUILD)/libsockit.so | awk '$$2 ~ /^[TDBR]$$/ {print $$3}' | grep -v '^sk_' || true); \
	if [ -n "$$bad" ]; then echo "exported symbols without the sk_ prefix:"; echo "$$bad"; exit 1; fi; \
	echo "check-symbols: every exported symbol has the sk_ prefix"

# No two files of the services library call each other in a circle.
.PHONY: check-cycles
check-cycles: $(SVC_LIB)
	python3 tools/depcycles.py $(SVC_LIB)

# One layout for every C file (.clang-format): `make format` applies it,
# `make format-check` fails on any file that differs (run by .ci/run).
FORMAT_SRC = $(shell find include src services cli tests examples fuzz bench/tools \
               -name '*.[ch]' -not -path '*/corpus/*' | sort)
.PHONY: format format-check
format:
	$(call install_pkgs,clang-format)
	clang-format -i $(FORMAT_SRC)
format-check:
	$(call install_pkgs,clang-format)
	clang-format --dry-run -Werror $(FORMAT_SRC)

# --- fuzzing (libFuzzer, clang) -------------------------------------------
# Every parser has a target in fuzz/ with a seed corpus in fuzz/corpus/NAME/
# (crashing inputs found later are kept there as regression cases).
FUZZ_CC     := clang
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -DSOCKIT_BUILDING \
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC    := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN    := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
# The fuzzers link the services library (built here with the fuzzing
# flags) like the command does; cli/util.o is the one cli file they need.
FUZZ_OBJ    := $(LIB_SRC:%.c=build/fuzz/obj/%.o) build/fuzz/obj/cli/util.o
FUZZ_SVC_LIB := build/fuzz/libsockit-services.a
FUZZ_SECONDS ?= 60
.SECONDARY: $(FUZZ_OBJ) $(SVC_SRC:%.c=build/fuzz/obj/%.o)

build/fuzz/obj/%.o: %.c include/sockit.h $(wildcard src/*.h cli/*.h) $(SVC_HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_SVC_LIB): $(SVC_SRC:%.c=build/fuzz/obj/%.o)
	rm -f $@ && ar rcs $@ $^

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJ) $(FUZZ_SVC_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_SVC_LIB) $(FUZZ_OBJ) $(SVC_LIBS) $(LDLIBS)

# `make fuzz` runs every target for FUZZ_SECONDS on a scratch copy of its corpus.
fuzz: deps-test $(FUZZ_BIN)
	@for t in $(FUZZ_BIN); do n=$${t#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus/$$n; \
	  echo "fuzzing $$n for $(FUZZ_SECONDS) s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/$$n- -print_final_stats=1 \
	    build/fuzz/corpus/$$n fuzz/corpus/$$n 2>&1 | tail -3 || exit 1; done

# The short run of `make test`: every kept input once, then a few seconds each.
# New inputs go to build/fuzz/corpus (libFuzzer writes into its first
# directory), never into the tracked seed corpus.
fuzz-smoke: $(FUZZ_BIN)
	@for t in $(FUZZ_BIN); do n=$${t#build/fuzz/fuzz_}; \
	  $$t -runs=0 fuzz/corpus/$$n >/dev/null 2>&1 || { echo "fuzz $$n: a corpus input fails"; $$t -runs=0 fuzz/corpus/$$n; exit 1; }; \
	  mkdir -p build/fuzz/corpus/$$n; \
	  $$t -max_total_time=3 -artifact_prefix=build/fuzz/$$n- build/fuzz/corpus/$$n fuzz/corpus/$$n \
	    >build/fuzz/$$n.log 2>&1 \
	    || { tail -30 build/fuzz/$$n.log; exit 1; }; \
	  echo "fuzz $$n: $$(grep -o 'Done [0-9]* runs' build/fuzz/$$n.log), no crash"; done

# --- install --------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BUILD)/sockit $(DESTDIR)$(PREFIX)/bin/sockit
	install -m 0644 $(BUILD)/libsockit.a $(DESTDIR)$(PREFIX)/lib/libsockit.a
	install -m 0755 $(BUILD)/libsockit.so $(DESTDIR)$(PREFIX)/lib/libsockit.so.0
	ln -sf libsockit.so.0 $(DESTDIR)$(PREFIX)/lib/libsockit.so
	install -m 0644 include/sockit.h $(DESTDIR)$(PREFIX)/include/sockit.h
	install -m 0644 docs/sockit.1 $(DESTDIR)$(PREFIX)/share/man/man1/sockit.1
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|'$$(sed -n 's/^#define SK_VERSION  *"\(.*\)"/\1/p' include/sockit.h)'|g' \
	  sockit.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sockit.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sockit $(DESTDIR)$(PREFIX)/lib/libsockit.a \
	  $(DESTDIR)$(PREFIX)/lib/libsockit.so $(DESTDIR)$(PREFIX)/lib/libsockit.so.0 \
	  $(DESTDIR)$(PREFIX)/include/sockit.h $(DESTDIR)$(PREFIX)/share/man/man1/sockit.1 \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/sockit.pc

clean:
	rm -rf build
