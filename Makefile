# scoped — build, test and demo.
#
#   make                 build scoped.core for Lua 5.4 into build/lua5.4/scoped/core.so
#   make LUA=luajit      build it for LuaJIT 2.1 into build/luajit/scoped/core.so
#   make ngx-wait        build/luajit/scoped/ngx_wait.so, OpenResty's non-blocking io_wait
#                        (needs nginx-dev; skipped without it)
#   make test            install missing deps, build both, start a throwaway MariaDB,
#                        run the busted specs on lua5.4 and luajit and the C tests
#   make demo            build, start a throwaway MariaDB, run examples/demo.lua
#   make test-asan       the specs under lua5.4 with the core built with ASan + UBSan
#   make test-tsan       the C pool thread test under ThreadSanitizer
#   make test-valgrind   the specs under lua5.4 in valgrind --leak-check=full
#   make fuzz            the libFuzzer targets (spec/fuzz/), FUZZ_TIME seconds each, and
#                        the bind lexer against a real server (spec/lexer_diff_spec.lua)
#   make fuzz-smoke      the same on the committed corpus plus a few seconds (CI)
#   make soak            the long variants of the fault and leak specs, then test-scaleout's
#   make test-scaleout   several hosts (issue 21) on real topologies: a primary + GTID
#                        replica and a 3-node Galera cluster (spec/support/topology.sh),
#                        spec/ha/*_ha.lua on lua5.4 and luajit: host lists, failover,
#                        read replicas, Galera (make test-ha: the same, its first name)
#   make docs            the reference (LDoc) into docs/, from the doc comments in lua/scoped/
#   make dist            scoped-V.tar.gz (git archive of HEAD) and scoped-V-1.src.rock
#   make test-release    dist, then the .src.rock installed offline into private trees
#                        on Lua 5.4 and LuaJIT, and require "scoped" from each
#   make mutants         the mutation run: each mutant of spec/mutants/list.lua applied to a
#                        scratch copy, which the specs must fail (MUTANTS=id1,id2 for some,
#                        MUTANTS_SINCE=<rev> for those of files changed since rev)
#   make mutants-ci      the same on a fixed sample of seven (CI)

LUA ?= lua5.4
CC ?= cc

ifeq ($(LUA),luajit)
  LUA_INC ?= $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
else
  LUA_INC ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
endif

MYSQL_CONFIG ?= $(shell command -v mariadb_config 2>/dev/null || command -v mysql_config 2>/dev/null)
MYSQL_CFLAGS ?= $(shell $(MYSQL_CONFIG) --cflags 2>/dev/null)
MYSQL_LIBS ?= $(shell $(MYSQL_CONFIG) --libs 2>/dev/null)

WARN = -std=c99 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L
OPT ?= -O2 -g
SAN ?=
# Two layers (CONTRIBUTING.md): csrc/core/ is plain C, built WITHOUT the
# Lua headers, so the compiler refuses any Lua in it (as Lua's LUA_CORE and
# cqueues' src/lib); csrc/lua/ is the binding, which sees both.
CFLAGS_CORE = $(WARN) $(OPT) $(SAN) -fPIC $(MYSQL_CFLAGS) $(CFLAGS)
CFLAGS_LUA = $(CFLAGS_CORE) $(LUA_INC) -Icsrc/core
LDFLAGS_ALL = -shared $(SAN) $(LDFLAGS)

BUILD ?= build/$(LUA)
CORE_SRCS = $(wildcard csrc/core/*.c)
CORE_HDRS = $(wildcard csrc/core/*.h)
LUA_SRCS = $(wildcard csrc/lua/*.c)
LUA_HDRS = $(wildcard csrc/lua/*.h)
OBJS = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(CORE_SRCS) $(LUA_SRCS))
CORE = $(BUILD)/scoped/core.so
# fork for the specs under Lua 5.4 (Debian's lua-posix is 5.1 only): spec/support/posix.lua
SPEC_POSIX = $(BUILD)/spec_posix.so

.PHONY: ngx-wait test-scaleout test-ha docs dist test-release all build test mutants mutants-ci test-asan test-tsan test-valgrind fuzz fuzz-smoke fuzz-deps soak demo ctest deps clean bench bench-smoke

all: $(CORE) $(SPEC_POSIX)
build: $(CORE)

$(BUILD)/obj/core/%.o: csrc/core/%.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_CORE) -c $< -o $@

$(BUILD)/obj/lua/%.o: csrc/lua/%.c $(CORE_HDRS) $(LUA_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LUA) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(OBJS) $(MYSQL_LIBS) -lpthread -lm

$(SPEC_POSIX): spec/support/spec_posix.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(OPT) -fPIC $(LUA_INC) -shared -o $@ $<

# ---- the OpenResty io_wait's C half (csrc/ngx/ngx_wait.c): its own .so, never
# part of core.so (it needs symbols only an nginx process has), built against
# nginx's headers configured as Debian built nginx (spec/support/ngx-headers.sh);
# skipped with a note when nginx-dev is absent (io_wait then falls back:
# README, "OpenResty")
NGX_WAIT = build/luajit/scoped/ngx_wait.so
NGX_HDRS = build/ngx-headers

ngx-wait:
	@flags=$$(bash spec/support/ngx-headers.sh $(NGX_HDRS)); rc=$$?; \
	if [ $$rc = 3 ]; then echo "ngx-wait: nginx-dev not installed: $(NGX_WAIT) not built"; exit 0; fi; \
	[ $$rc = 0 ] || exit 1; \
	if [ ! -f $(NGX_WAIT) ] || [ csrc/ngx/ngx_wait.c -nt $(NGX_WAIT) ]; then \
	    mkdir -p $(dir $(NGX_WAIT)) && echo "$(CC) ... -o $(NGX_WAIT) csrc/ngx/ngx_wait.c" && \
	    $(CC) -std=c99 -Wall -Wextra -Werror $(OPT) $(SAN) -fPIC -shared $$flags $(LDFLAGS) \
	        -o $(NGX_WAIT) csrc/ngx/ngx_wait.c; \
	fi

# ---- C tests: pure C pieces (no Lua) driven from plain C programs -------------
CTEST_SRCS = $(wildcard spec/c/test_*.c)
CTEST_CORE = $(CORE_SRCS)
CTEST_BINS = $(patsubst spec/c/%.c,build/ctest/%,$(CTEST_SRCS))
CTEST_CFLAGS = $(WARN) -O1 -g $(MYSQL_CFLAGS) -Icsrc/core

build/ctest/%: spec/c/%.c $(CTEST_CORE) $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CTEST_CFLAGS) $(CTEST_SAN) -o $@ $< $(CTEST_CORE) $(MYSQL_LIBS) -lpthread -lm

ctest: $(CTEST_BINS)

# ---- the one test command ----------------------------------------------------
deps:
	@bash spec/support/deps.sh nginx libnginx-mod-http-lua lua-resty-core curl lua-posix openssl lua-sql-mysql \
	    lua-ldoc python3-mysqldb lua-cqueues lua-luv nginx-dev libpcre2-dev libssl-dev zlib1g-dev

test: deps
	@$(MAKE) --no-print-directory LUA=lua5.4
	@$(MAKE) --no-print-directory LUA=luajit
	@$(MAKE) --no-print-directory ngx-wait
	@$(MAKE) --no-print-directory ctest
	@bash spec/support/with-db.sh bash spec/support/run-tests.sh

test-asan: deps
	@$(MAKE) --no-print-directory LUA=lua5.4 BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
	@SCOPED_ASAN=1 SCOPED_SLOW=1 bash spec/support/with-db.sh bash spec/support/run-asan.sh

test-tsan: deps
	@$(MAKE) --no-print-directory build/tsan/test_pool_threads
	@bash spec/support/run-tap.sh "test_pool_threads (tsan)" ./build/tsan/test_pool_threads

# the core built -O1 -g for readable memcheck reports; suppressions in
# spec/support/valgrind.supp (Lua's and libmariadb's only)
test-valgrind: deps
	@bash spec/support/deps.sh valgrind
	@$(MAKE) --no-print-directory LUA=lua5.4 BUILD=build/valgrind OPT="-O1 -g"
	@bash spec/support/with-db.sh bash spec/support/run-valgrind.sh

test-scaleout: deps
	@bash spec/support/deps.sh galera-4 rsync
	@$(MAKE) --no-print-directory LUA=lua5.4
	@$(MAKE) --no-print-directory LUA=luajit
	@bash spec/support/run-ha.sh

# the target's first name, which CI (.ci/run) calls
test-ha: test-scaleout

# run-soak.sh runs test-scaleout's specs too (spec/ha/, their own servers)
soak: deps
	@bash spec/support/deps.sh galera-4 rsync
	@$(MAKE) --no-print-directory LUA=lua5.4
	@$(MAKE) --no-print-directory LUA=luajit
	@bash spec/support/with-db.sh bash spec/support/run-soak.sh

# ---- mutation testing: spec/mutants/ (CONTRIBUTING.md, "Mutants") -----------------
# one throwaway MariaDB for the whole run; never part of `make test`
MUTANTS_CI = esc-quote-double,pool-timeout-late,needs-end-in-trans,busy-not-marked,savepoint-name-reused,hosts-disconnect-no-deny,causal-sync-wait-dropped

mutants: deps
	@MUTANTS="$(MUTANTS)" MUTANTS_SINCE="$(MUTANTS_SINCE)" \
	    bash spec/support/with-db.sh bash spec/mutants/run.sh

mutants-ci: deps
	@MUTANTS="$(MUTANTS_CI)" MUTANTS_SINCE= bash spec/support/with-db.sh bash spec/mutants/run.sh

# ---- libFuzzer targets: the pure C parsers (spec/fuzz/fuzz_*.c) -------------------
FUZZ_CC ?= clang-14
FUZZ_TIME ?= 300
FUZZ_SMOKE_TIME ?= 15
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc/core
FUZZ_BINS = build/fuzz/fuzz_url build/fuzz/fuzz_binds

build/fuzz/fuzz_url: spec/fuzz/fuzz_url.c csrc/core/url.c csrc/core/url.h csrc/core/error.c csrc/core/error.h \
    csrc/core/chars.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ spec/fuzz/fuzz_url.c csrc/core/url.c csrc/core/error.c

build/fuzz/fuzz_binds: spec/fuzz/fuzz_binds.c csrc/core/binds.c csrc/core/buf.c csrc/core/binds.h csrc/core/buf.h \
    csrc/core/chars.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ spec/fuzz/fuzz_binds.c csrc/core/binds.c csrc/core/buf.c -lm

fuzz-deps:
	@bash spec/support/deps.sh clang-14 libclang-rt-14-dev

# both also run the bind lexer against a throwaway server
# (spec/lexer_diff_spec.lua, 20 templates per combination per second given)
fuzz: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@$(MAKE) --no-print-directory LUA=lua5.4
	@bash spec/support/run-fuzz.sh $(FUZZ_TIME)

fuzz-smoke: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@$(MAKE) --no-print-directory LUA=lua5.4
	@bash spec/support/run-fuzz.sh $(FUZZ_SMOKE_TIME)

build/tsan/test_pool_threads: spec/c/test_pool_threads.c $(CTEST_CORE) $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CTEST_CFLAGS) -fsanitize=thread -o $@ $< $(CTEST_CORE) $(MYSQL_LIBS) -lpthread -lm

demo: deps
	@$(MAKE) --no-print-directory LUA=lua5.4
	@LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./build/lua5.4/?.so;;" \
	    bash spec/support/with-db.sh --demo lua5.4 examples/demo.lua

# ---- benchmarks: bench/README.md (BENCH_ARGS="--plain --rounds 9" passes options)
bench:
	@bash bench/run.sh $(BENCH_ARGS)

# what CI runs: every workload once, small; proves `make bench` works on a
# fresh machine (its figures mean nothing)
bench-smoke:
	@bash bench/run.sh --quick --rounds 1

# ---- the reference: LDoc over lua/scoped/*.lua (config.ld), README.md as its
# front page; built, not committed (README: Reference); spec/docs_spec.lua
# checks that every public name is documented, here and in types/scoped.lua
docs:
	@bash spec/support/deps.sh lua-ldoc
	@rm -rf docs
	@ldoc . 2>&1 | grep -v '^format: ' || true
	@test -f docs/index.html

# ---- releases: the version is lua/scoped/init.lua's _VERSION, written nowhere
# else but rockspec/scoped-V-1.rockspec and CHANGELOG.md (spec/release_spec.lua
# checks they agree); spec/support/release.sh says why pack goes through a copy
VERSION := $(shell sed -n 's/^ *_VERSION = "\([^"]*\)".*/\1/p' lua/scoped/init.lua)

dist:
	@bash spec/support/release.sh dist

test-release: deps
	@bash spec/support/deps.sh zip unzip
	@bash spec/support/release.sh dist
	@bash spec/support/run-tap.sh "release $(VERSION): dist, pack, install, require" \
	    bash spec/support/release.sh check

clean:
	rm -rf build docs scoped-$(VERSION).tar.gz scoped-$(VERSION)-1.src.rock
