#!/usr/bin/env bash
# run.sh — what `make mutants` runs inside spec/support/with-db.sh (one
# throwaway MariaDB for the whole run).
#
# For each mutant of spec/mutants/list.lua (its head says how to write one):
#   1. a copy of the tree (the working tree as it is, without build/ and .git),
#      built once, is copied again to a scratch dir: the real tree is never touched;
#   2. the mutant is applied there: STALE when its before text is not in its
#      file exactly once, so the list cannot rot silently;
#   3. build: make LUA=lua5.4, and make LUA=luajit for shared code (csrc/, lua/),
#      make ctest for csrc/core/;
#   4. the busted specs on lua5.4 (the mutant's likely specs first, then the
#      rest), then on luajit (shared code), then the C tests (csrc/core/),
#      one spec file at a time, stopping at the first failure: KILLED, by
#      what, once that spec file (or the C tests) passes on the unmutated
#      copy; a spec that fails there too is flaky on this machine and kills
#      nothing (the line names it), the run goes on. Nothing fails: SURVIVED.
#      Each mutant has MUTANT_TIMEOUT seconds (default 900) in all; a mutant
#      that runs past them (a hang) is KILLED "by timeout".
# One line per mutant: id, KILLED / SURVIVED / STALE / BROKEN (does not
# build) / EQUIVALENT (marked so in the list, with the reason; not counted),
# by what, seconds. Then the score, and "N passed, N failed" (killed passed;
# survived, stale, broken failed). Each mutant's full log: build/mutants/ID.log.
#
# Environment:
#   MUTANTS=id1,id2        only these
#   MUTANTS_SINCE=<rev>    only mutants whose file changed since rev (git diff rev)
#   MUTANT_TIMEOUT=<s>     the per-mutant cap (default 900)
#   BUSTED                 default /usr/bin/busted
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
root=$PWD

BUSTED=${BUSTED:-/usr/bin/busted}
CAP=${MUTANT_TIMEOUT:-900}
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
t_all=$(date +%s)

if [ -z "${SCOPED_TEST_URL:-}" ]; then
    echo "# NOTE: SCOPED_TEST_URL is not set (run me via spec/support/with-db.sh, or make mutants)"
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/scoped-mutants.XXXXXX") || exit 1
# timeout(1) runs each stage in a process group of its own: a TERM or INT
# to us (with-db.sh stopping the run) must reach it, or it outlives us
cur=""
cleanup() {
    [ -n "$cur" ] && kill -TERM -- "-$cur" 2>/dev/null
    rm -rf -- "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

changed=""
if [ -n "${MUTANTS_SINCE:-}" ]; then
    changed=$scratch/changed
    if ! git diff --name-only "$MUTANTS_SINCE" -- >"$changed"; then
        echo "mutants: git diff --name-only $MUTANTS_SINCE failed"
        echo "0 passed, 1 failed"
        exit 1
    fi
fi
if ! sel=$(lua5.4 spec/mutants/mutants.lua select "${MUTANTS:-}" "$changed"); then
    echo "0 passed, 1 failed"
    exit 1
fi
mapfile -t rows <<<"$sel"
[ -z "$sel" ] && rows=()
echo "# mutants: ${#rows[@]} selected${MUTANTS:+ (MUTANTS=$MUTANTS)}${MUTANTS_SINCE:+ (changed since $MUTANTS_SINCE)}; cap ${CAP} s each"

if [ ${#rows[@]} -eq 0 ]; then
    echo "# mutants: nothing to run"
    echo "0 passed, 0 failed"
    exit 0
fi

logdir=$root/build/mutants
mkdir -p "$logdir"

# ---- the unmutated copy, built once ------------------------------------------------
base=$scratch/base
mkdir -p "$base"
tar -cf - --exclude=./build --exclude=./.git . | tar -C "$base" -xf -
t0=$(date +%s)
if ! (cd "$base" && make -j2 LUA=lua5.4 && make -j2 LUA=luajit && make -j2 ctest) \
        >"$logdir/base-build.log" 2>&1; then
    echo "mutants: the unmutated tree does not build (build/mutants/base-build.log)"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "# the unmutated copy built in $(($(date +%s) - t0)) s"

mapfile -t all_specs < <(cd "$base" && find spec -name '*_spec.lua' | sort)

killed=0 survived=0 stale=0 broken=0 equivalent=0
by=""

# stage LOG DEADLINE CMD...: 0 passed, 1 failed (sets $by), 2 timed out
stage() {
    local log=$1 deadline=$2 rc left out
    shift 2
    left=$((deadline - $(date +%s)))
    if [ "$left" -le 0 ]; then return 2; fi
    out=$scratch/stage.out
    echo "## $*" >>"$log"
    # in the background, so that a signal to us runs our trap at once
    timeout -k 5 "$left" bash -c '"$@"' stage "$@" >"$out" 2>&1 </dev/null &
    cur=$!
    wait "$cur"
    rc=$?
    cur=""
    cat "$out" >>"$log"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then return 2; fi
    if [ "$rc" != 0 ] || grep -q '^not ok' "$out"; then
        # busted's TAP: "not ok N - name" then "# spec/x_spec.lua @ LINE"
        by=$(awk '/^not ok/ { f = 1; next } f && /^# .*_spec\.lua @ [0-9]+/ { sub(/^# /, ""); sub(/ @ /, ":"); print; exit }' "$out")
        [ -z "$by" ] && by=$(grep -m1 '^not ok' "$out" | cut -c1-70)
        [ -z "$by" ] && by="exit $rc"
        return 1
    fi
    return 0
}

busted_run() {   # busted_run LUA FILES...
    local lua=$1
    shift
    env LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
        LUA_CPATH="./build/$lua/?.so;;" SCOPED_LUA="$lua" \
        "$lua" "$BUSTED" --no-keep-going -o TAP "$@"
}

ctest_run() {
    local bin rc=0
    for bin in build/ctest/test_*; do
        echo "# $bin"
        stdbuf -oL -eL "./$bin" || { echo "not ok - $bin exited $?"; return 1; }
    done
    return $rc
}

# confirm WHAT CMD...: a failure of CMD on the mutant counts as a kill only
# if CMD passes on the unmutated copy: a spec that fails there too (a
# flaky one, on a loaded machine) kills nothing, and the run goes on.
# Returns 0 when the kill stands (result, what set).
confirm() {
    local found=$1 rc
    shift
    echo "## confirming on the unmutated copy: $*" >>"$log"
    cd "$base" || exit 1
    stage "$log" "$deadline" "$@"
    rc=$?
    cd "$m" || exit 1
    case $rc in
    0) result=KILLED what="by $found"; return 0 ;;
    2) result=KILLED what="by $found (not confirmed: the cap ran out)"; return 0 ;;
    esac
    flaky="$flaky $*"
    flaky=${flaky//busted_run /}
    return 1
}

export -f busted_run ctest_run
export BUSTED

report() {   # id status secs what
    printf '%-30s %-10s %4d s  %s\n' "$1" "$2" "$3" "$4"
}

for row in "${rows[@]}"; do
    IFS=$'\t' read -r id file state likely <<<"$row"
    t0=$(date +%s)
    log=$logdir/$id.log
    : >"$log"
    case $state in
    stale:*)
        stale=$((stale + 1))
        report "$id" STALE 0 "${state#stale:}"
        continue ;;
    equivalent:*)
        equivalent=$((equivalent + 1))
        report "$id" EQUIVALENT 0 "${state#equivalent:}"
        continue ;;
    esac
    m=$scratch/m
    rm -rf -- "$m"
    cp -a "$base" "$m"
    if ! lua5.4 spec/mutants/mutants.lua apply "$id" "$m" >>"$log" 2>&1; then
        stale=$((stale + 1))
        report "$id" STALE 0 "$(tail -n 1 "$log")"
        continue
    fi
    diff -u --label "a/$file" --label "b/$file" "$base/$file" "$m/$file" >>"$log" 2>&1
    shared=0 core=0
    case $file in csrc/* | lua/*) shared=1 ;; esac
    case $file in csrc/core/*) core=1 ;; esac

    if ! (cd "$m" && make -j2 LUA=lua5.4 &&
            { [ "$shared" = 0 ] || make -j2 LUA=luajit; } &&
            { [ "$core" = 0 ] || make -j2 ctest; }) >>"$log" 2>&1; then
        broken=$((broken + 1))
        report "$id" BROKEN $(($(date +%s) - t0)) "does not build (build/mutants/$id.log)"
        continue
    fi

    # the likely specs first, then the rest
    first=() rest=()
    for s in $likely; do [ -f "$m/$s" ] && first+=("$s"); done
    for s in "${all_specs[@]}"; do
        case " $likely " in *" $s "*) ;; *) rest+=("$s") ;; esac
    done
    luas=(lua5.4)
    [ "$shared" = 1 ] && luas+=(luajit)
    deadline=$((t0 + CAP))
    result=SURVIVED what="every spec passed" flaky=""
    cd "$m" || exit 1
    # one spec file at a time, so a kill names its file and can be confirmed
    for lua in "${luas[@]}"; do
        for f in "${first[@]}" "${rest[@]}"; do
            stage "$log" "$deadline" busted_run "$lua" "$f"
            rc=$?
            if [ "$rc" = 1 ]; then
                confirm "$lua $by" busted_run "$lua" "$f" && break 2
                continue
            fi
            if [ "$rc" = 2 ]; then
                result=KILLED what="killed by timeout ($lua $f, cap $CAP s)"
                break 2
            fi
        done
    done
    if [ "$result" = SURVIVED ] && [ "$core" = 1 ]; then
        stage "$log" "$deadline" ctest_run
        case $? in
        1) confirm "the C tests: $(grep -m1 '^not ok' "$scratch/stage.out" | cut -c1-60)" ctest_run ;;
        2) result=KILLED what="killed by timeout (C tests, cap $CAP s)" ;;
        esac
    fi
    [ -n "$flaky" ] && what="$what; not counted, failing unmutated too:$flaky"
    cd "$root" || exit 1
    if [ "$result" = KILLED ]; then killed=$((killed + 1)); else survived=$((survived + 1)); fi
    report "$id" "$result" $(($(date +%s) - t0)) "$what"
done

counted=$((killed + survived + stale + broken))
score=0
[ "$counted" -gt 0 ] && score=$((100 * killed / counted))
echo "# mutants: $killed killed, $survived survived, $stale stale, $broken broken" \
    "of $counted counted ($equivalent equivalent, not counted): score ${score}%;" \
    "$(($(date +%s) - t_all)) s in all"
echo "$killed passed, $((survived + stale + broken)) failed"
[ $((survived + stale + broken)) -eq 0 ]
