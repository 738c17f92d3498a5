# shellcheck shell=bash
# tap-count.sh — sourced (not run) by run-tests.sh and run-asan.sh.
#
#   tap_run NAME CMD...   run CMD, show its output (stdout+stderr) live, count its TAP
#                         lines, print a per-runner summary line
#   tap_finish            print the recap and, as the very last line,
#                         "N passed, N failed"; returns 1 if anything failed
#   spec_compile_check LUA  show the compile errors of spec/**/*_spec.lua (see below)
#
# Counting, per runner:
#   passed   lines starting "ok"      (not "ok ... # SKIP", those are counted as skipped)
#   failed   lines starting "not ok"  (busted prints failures, errors and spec files
#                                     that do not load as "not ok" too)
#   plus     tests a plan "1..N" announced but that never ran;
#            at least one failure if the runner exited non-zero, or ended without a
#            plan (crash, abort, sanitizer report, timeout) and no "not ok" explains it.
#   Any runner exiting non-zero makes tap_finish fail even if the counts look clean.
#
# TAP_TIMEOUT (seconds, 0 = none) bounds each runner; it is read at each tap_run.

TAP_PASSED=0
TAP_FAILED=0
TAP_STATUS=0
TAP_RECAP=()
_TAP_LOG=""

_tap_on_exit() { [ -n "$_TAP_LOG" ] && rm -f -- "$_TAP_LOG"; }
trap _tap_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# _tap_count FILE -> "passed failed skipped todo tests has_plan plan"
_tap_count() {
    awk '
        /^not ok([ \t]|$)/ {
            n++
            if (tolower($0) ~ /#[ \t]*todo/) todo++; else fail++
            next
        }
        /^ok([ \t]|$)/ {
            n++
            if (tolower($0) ~ /#[ \t]*skip/) skip++; else pass++
            next
        }
        /^1\.\.[0-9]+/ { has_plan = 1; plan = substr($0, 4) + 0 }
        END { printf "%d %d %d %d %d %d %d\n", pass, fail, skip, todo, n, has_plan, plan }
    ' "$1"
}

tap_run() {
    local name=$1
    shift
    local rc pass fail skip todo ntests has_plan plan extra="" line
    local -a notes=() wrap=()

    if [ "${TAP_TIMEOUT:-0}" != 0 ] && command -v timeout >/dev/null 2>&1; then
        # --foreground: stay in our process group, so a TERM to the group reaches CMD
        wrap=(timeout --foreground -k 10 "$TAP_TIMEOUT")
    fi
    _TAP_LOG=$(mktemp "${TMPDIR:-/tmp}/scoped-tap.XXXXXX") || return 1

    echo "# ---- $name: $*"
    "${wrap[@]}" "$@" 2>&1 | tee "$_TAP_LOG"
    rc=${PIPESTATUS[0]}

    read -r pass fail skip todo ntests has_plan plan < <(_tap_count "$_TAP_LOG")
    rm -f -- "$_TAP_LOG"
    _TAP_LOG=""

    if [ "$has_plan" = 1 ] && [ "$plan" -gt "$ntests" ]; then
        notes+=("planned $plan tests, saw $ntests: $((plan - ntests)) counted as failed")
        fail=$((fail + plan - ntests))
    elif [ "$has_plan" = 1 ] && [ "$plan" -lt "$ntests" ]; then
        notes+=("planned $plan tests but saw $ntests: counted as a failure")
        fail=$((fail + 1))
    fi
    if [ "$rc" = 124 ] && [ ${#wrap[@]} -gt 0 ]; then
        notes+=("timed out after ${TAP_TIMEOUT} s")
    elif [ "$rc" -gt 128 ]; then
        notes+=("killed by signal $((rc - 128))")
    fi
    if [ "$has_plan" != 1 ]; then
        notes+=("no TAP plan (1..N): it crashed or stopped early")
    fi
    if { [ "$rc" != 0 ] || [ "$has_plan" != 1 ]; } && [ "$fail" = 0 ]; then
        fail=1
    fi

    [ "$skip" != 0 ] && extra+=", $skip skipped"
    [ "$todo" != 0 ] && extra+=", $todo todo"
    line="$name: $pass passed, $fail failed$extra (exit $rc)"
    for n in "${notes[@]}"; do echo "# NOTE $name: $n"; done
    echo "# $line"

    TAP_PASSED=$((TAP_PASSED + pass))
    TAP_FAILED=$((TAP_FAILED + fail))
    if [ "$rc" != 0 ] || [ "$fail" != 0 ]; then
        TAP_STATUS=1
        TAP_RECAP+=("FAIL $line")
    else
        TAP_RECAP+=("ok   $line")
    fi
    return 0
}

# a runner that could not even start
tap_fail() {
    local name=$1
    shift
    echo "# NOTE $name: $*"
    echo "# $name: 0 passed, 1 failed"
    TAP_FAILED=$((TAP_FAILED + 1))
    TAP_STATUS=1
    TAP_RECAP+=("FAIL $name: 0 passed, 1 failed ($*)")
}

# busted 2.1.1's TAP handler itself crashes on a spec file that does not compile
# (TAP.lua:44, no currentline): it prints "not ok N - <file>", then a traceback
# of its own, no plan, and runs no further specs.  The run is counted as failed
# either way; this only shows the actual syntax error, which busted swallows.
spec_compile_check() {
    local lua=$1
    local -a files=()
    mapfile -d '' files < <(find spec -name '*_spec.lua' -print0 2>/dev/null | sort -z)
    [ ${#files[@]} -eq 0 ] && return 0
    "$lua" - "${files[@]}" <<'LUA'
for i = 1, #arg do
  local ok, err = loadfile(arg[i])
  if not ok then print("# NOTE: does not compile: " .. tostring(err)) end
end
LUA
}

tap_finish() {
    local r
    echo "# ==== summary"
    for r in "${TAP_RECAP[@]}"; do echo "# $r"; done
    echo "$TAP_PASSED passed, $TAP_FAILED failed"
    return "$TAP_STATUS"
}
