#!/usr/bin/env bash
# run-fuzz.sh SECONDS — what `make fuzz` (and, briefly, `make fuzz-smoke`) runs:
# each libFuzzer target in build/fuzz/ (built from spec/fuzz/fuzz_*.c with clang's
# -fsanitize=fuzzer,address,undefined) first over its committed seed corpus
# spec/fuzz/corpus/NAME, then fuzzing for SECONDS; then the bind lexer's
# differential test against a throwaway server (needs build/lua5.4). Each target
# counts as one TAP test, the differential as its busted tests; the last line is
# "N passed, N failed" (tap-count.sh).
#
# New inputs go to build/fuzz/corpus-NAME (kept between runs, so `make fuzz`
# picks up where it stopped), never into the committed corpus; a crashing input
# is written to build/fuzz/artifacts/ and its path printed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh

shopt -s nullglob
srcs=(spec/fuzz/fuzz_*.c)
if [ ${#srcs[@]} -eq 0 ]; then
    tap_fail "fuzz" "no spec/fuzz/fuzz_*.c"
    tap_finish
    exit
fi

# one target as a TAP stream of one test
fuzz_one() {
    local name=$1 secs=$2 bin=build/fuzz/$1 rc
    local corpus=build/fuzz/corpus-$name seeds=spec/fuzz/corpus/${name#fuzz_}
    mkdir -p "$corpus" build/fuzz/artifacts
    echo "1..1"
    if [ ! -x "$bin" ]; then
        echo "not ok 1 - $name: not built (make build/fuzz/$name)"
        return 1
    fi
    # -timeout: one input running over 10 s is a hang, reported as a failure
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=build/fuzz/artifacts/"$name"- "$corpus" "$seeds" 2>&1 |
        grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' | tail -n 80 | sed 's/^/# /'
    rc=${PIPESTATUS[0]}
    local runs
    runs=$(ls "$seeds" | wc -l)
    if [ "$rc" = 0 ]; then
        echo "ok 1 - $name: no crash and no property failure over $runs seeds and ${secs} s of fuzzing"
    else
        echo "not ok 1 - $name: exit $rc (see the report above; the input is in build/fuzz/artifacts/)"
    fi
    return "$rc"
}

if [ "${1:-}" = --one ]; then   # tap_run runs each target through this
    fuzz_one "$2" "$3"
    exit
fi

secs=${1:-60}
TAP_TIMEOUT=$((secs + 120))
for src in "${srcs[@]}"; do
    name=$(basename "$src" .c)
    tap_run "$name" bash "${BASH_SOURCE[0]}" --one "$name" "$secs"
done

# The bind lexer against the server's own (spec/lexer_diff_spec.lua): random
# templates, 20 per combination of sql_mode and charset per second given, on a
# throwaway server (SCOPED_TEST_URL if set), with a random seed that a failure
# prints (rerun: SCOPED_LEXER_DIFF_SEED=... make test, or busted that spec).
n=$((secs * 20))
seed=$(( ($(date +%s) % 100000) * 7 + RANDOM % 7 ))
echo "# lexer differential: $n templates per combination, SCOPED_LEXER_DIFF_SEED=$seed"
TAP_TIMEOUT=$((secs * 4 + 120))
tap_run "lexer differential (server)" env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 \
    LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" LUA_CPATH="./build/lua5.4/?.so;;" \
    SCOPED_LEXER_DIFF_N="$n" SCOPED_LEXER_DIFF_SEED="$seed" \
    bash spec/support/with-db.sh lua5.4 "${BUSTED:-/usr/bin/busted}" -o TAP spec/lexer_diff_spec.lua
tap_finish
