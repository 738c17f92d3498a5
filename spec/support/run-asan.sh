#!/usr/bin/env bash
# run-asan.sh — what `make test-asan` runs inside with-db.sh: the busted specs
# under lua5.4, loading build/asan/scoped/core.so (built with
# -fsanitize=address,undefined).  Same counting and last line as run-tests.sh.
#
# The interpreter (lua5.4) is not instrumented, so the ASan runtime has to be
# preloaded: it must come first in the library list, before core.so pulls it
# in with dlopen().  libubsan needs no preloading: it is a normal DT_NEEDED of
# core.so and may be loaded late.
#
# detect_leaks=0: LeakSanitizer would report everything the uninstrumented
# interpreter, busted and the C modules it loads (lfs, luasystem, term, cjson)
# still hold when the process exits — all noise, nothing about our code, and it
# would turn every clean run into a failure.  Use-after-free, overflows,
# double frees etc. are still caught; abort_on_error makes them fatal.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh

BUSTED=${BUSTED:-/usr/bin/busted}
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4

name="lua5.4 busted (asan)"
asan=$(gcc -print-file-name=libasan.so 2>/dev/null)
if [ -z "$asan" ] || [ "$asan" = libasan.so ] || [ ! -e "$asan" ]; then
    tap_fail "$name" "the ASan runtime libasan.so was not found via gcc -print-file-name"
    tap_finish
    exit
fi
asan=$(readlink -f "$asan")
if [ ! -f build/asan/scoped/core.so ]; then
    echo "# NOTE $name: build/asan/scoped/core.so is missing (make test-asan builds it)"
fi

TAP_TIMEOUT=${SCOPED_TEST_TIMEOUT:-3600}
spec_compile_check lua5.4
tap_run "$name" env \
    LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
    LUA_CPATH="./build/asan/?.so;;" \
    SCOPED_LUA=lua5.4 \
    LD_PRELOAD="$asan${LD_PRELOAD:+:$LD_PRELOAD}" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
    lua5.4 "$BUSTED" -o TAP spec

tap_finish
