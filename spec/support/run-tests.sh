#!/usr/bin/env bash
# run-tests.sh — what `make test` runs inside with-db.sh:
#   the busted specs under lua5.4 and under luajit, then every C test
#   (build/ctest/test_* for each spec/c/test_*.c).
# Output is shown live; the last line is "N passed, N failed" (see tap-count.sh);
# exits non-zero if anything failed or any runner exited non-zero.
#
# Environment: BUSTED (default /usr/bin/busted), SCOPED_TEST_TIMEOUT (seconds per
# busted run, default 1800), SCOPED_CTEST_TIMEOUT (seconds per C test, default 300).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh

BUSTED=${BUSTED:-/usr/bin/busted}
# our LUA_PATH/LUA_CPATH must win: Lua 5.4 prefers the _5_4 variants
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4

if [ -z "${SCOPED_TEST_URL:-}" ]; then
    echo "# NOTE: SCOPED_TEST_URL is not set (run me via spec/support/with-db.sh)"
fi

TAP_TIMEOUT=${SCOPED_TEST_TIMEOUT:-1800}
for lua in lua5.4 luajit; do
    name="$lua busted"
    if ! command -v "$lua" >/dev/null 2>&1; then
        tap_fail "$name" "$lua is not installed (bash spec/support/deps.sh)"
        continue
    fi
    if [ ! -f "build/$lua/scoped/core.so" ]; then
        echo "# NOTE $name: build/$lua/scoped/core.so is missing (make LUA=$lua)"
    fi
    spec_compile_check "$lua"
    tap_run "$name" env \
        LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
        LUA_CPATH="./build/$lua/?.so;;" \
        SCOPED_LUA="$lua" \
        "$lua" "$BUSTED" -o TAP spec
done
tap_run "openresty (nginx + luajit)" bash spec/openresty/run.sh

TAP_TIMEOUT=${SCOPED_CTEST_TIMEOUT:-300}
shopt -s nullglob
srcs=(spec/c/test_*.c)
if [ ${#srcs[@]} -eq 0 ]; then
    echo "# no C tests (spec/c/test_*.c)"
fi
for src in "${srcs[@]}"; do
    t=$(basename "$src" .c)
    bin=build/ctest/$t
    if [ ! -x "$bin" ]; then
        tap_fail "$bin" "not built (make ctest)"
        continue
    fi
    # line-buffered stdout, so a crash loses no "ok" lines
    tap_run "$bin" stdbuf -oL -eL "./$bin"
done
for bin in build/ctest/test_*; do
    [ -f "spec/c/$(basename "$bin").c" ] ||
        echo "# NOTE: $bin has no spec/c source any more; not run"
done

tap_finish
