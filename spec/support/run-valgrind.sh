#!/usr/bin/env bash
# run-valgrind.sh — what `make test-valgrind` runs inside with-db.sh: the busted
# specs under lua5.4 in valgrind's memcheck with --leak-check=full and
# --error-exitcode=1, loading build/valgrind/scoped/core.so (-O1 -g). Same
# counting and last line as run-tests.sh: any memcheck error (invalid read or
# write, use of uninitialised memory, a definitely or possibly lost block) makes
# valgrind exit 1, which counts as a failure even when every spec passed.
#
# Suppressions: spec/support/valgrind.supp, only for what belongs to Lua or
# libmariadb (each entry says why). SCOPED_SLOW=1 makes the leak specs run
# fewer cycles and skip their RSS comparison (memcheck's allocator keeps freed
# blocks in a queue on purpose). Child processes (the restarted server, the
# second session of the deadlock spec) are not traced; children made by fork()
# (the fork specs) run under memcheck but report nothing
# (--child-silent-after-fork): they end by _exit holding all of Lua's memory,
# which memcheck would list as lost, and say how they went in a file.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh

BUSTED=${BUSTED:-/usr/bin/busted}
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4

name="lua5.4 busted (valgrind)"
if ! command -v valgrind >/dev/null 2>&1; then
    tap_fail "$name" "valgrind is not installed (bash spec/support/deps.sh valgrind)"
    tap_finish
    exit
fi
if [ ! -f build/valgrind/scoped/core.so ]; then
    echo "# NOTE $name: build/valgrind/scoped/core.so is missing (make test-valgrind builds it)"
fi

TAP_TIMEOUT=${SCOPED_TEST_TIMEOUT:-3600}
spec_compile_check lua5.4
tap_run "$name" env \
    LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
    LUA_CPATH="./build/valgrind/?.so;;" \
    SCOPED_LUA=lua5.4 SCOPED_SLOW=1 \
    valgrind --quiet --leak-check=full --error-exitcode=1 --trace-children=no --child-silent-after-fork=yes \
        --suppressions=spec/support/valgrind.supp --num-callers=30 --keep-debuginfo=yes \
    lua5.4 "$BUSTED" -o TAP spec

tap_finish
