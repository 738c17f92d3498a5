#!/usr/bin/env bash
# bench/run.sh — what `make bench` runs: scoped next to raw libmariadb (C),
# LuaSQL and SQLAlchemy 1.4 + mysqlclient, on one throwaway MariaDB.
#
#   bash bench/run.sh [--plain] [--server-free] [--rounds N] [--quick] [--only W[,W...]]
#
#   --plain     no busy loop on the other CPU (the default keeps it awake)
#   --server-free  leave the throwaway server's threads free to run on either
#               CPU (the default pins them to the benchmarks' CPU)
#   --rounds N  rounds (default 9; every figure is the median over rounds)
#   --quick     smaller N for every workload (a smoke test, not for figures)
#   --only ...  run only these workloads (w1,w2,w2s,w3,w3stream,w4one,w4batch,w4multi,
#               lookup,w5thr,w5co,ngx; the statement count always runs; ngx is the
#               OpenResty load test, bench/ngx.sh, with its own table; w2 and w2s
#               bring their io_wait variants, w2_cqueues ... w2s_luv4)
#   (BENCH_ARGS="--plain" make bench passes options through make)
#
# Steps: install missing Debian packages (spec/support/deps.sh), build
# scoped.core for Lua 5.4 and LuaJIT and the benchmark programs into
# build/bench/, start a MariaDB (spec/support/with-db.sh; SCOPED_TEST_SOCKET
# set means: use that server), load bench/setup.sql, pin it to the benchmarks'
# CPU (our throwaway server only), then round by round run every workload for
# every system. W2, W2s, W3 and W4 run all systems at once, in slices taken in
# turn (bench/interleave.py); the others run each system as a fresh process,
# the systems' order rotated each round. Everything runs pinned to one CPU.
# The table goes to stdout and to bench/results/latest.md (--plain:
# latest-plain.md), the raw figures to the .tsv beside it. bench/README.md
# says how to read it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

mode=busy
pin_server=1
rounds=${BENCH_ROUNDS:-9}
quick=0
only=""
inner=0
while [ $# -gt 0 ]; do
    case $1 in
        --plain) mode=plain ;;
        --server-free) pin_server=0 ;;
        --rounds) rounds=$2; shift ;;
        --quick) quick=1 ;;
        --only) only=$2; shift ;;
        --inner) inner=1 ;;
        *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
say() { echo "bench: $*" >&2; }

# ---- outside the database: deps and builds ------------------------------------
if [ "$inner" = 0 ]; then
    bash spec/support/deps.sh lua-sql-mysql python3-sqlalchemy python3-mysqldb valgrind lua-cqueues lua-luv \
        nginx libnginx-mod-http-lua lua-resty-core curl wrk nginx-dev libpcre2-dev libssl-dev zlib1g-dev || exit 1
    make --no-print-directory LUA=lua5.4 >&2 || exit 1
    make --no-print-directory LUA=luajit >&2 || exit 1
    make --no-print-directory ngx-wait >&2 || exit 1
    mkdir -p build/bench/lua5.4 build/bench/luajit
    MY_CFLAGS=$(mariadb_config --cflags) MY_LIBS=$(mariadb_config --libs)
    cc -O2 -g -Wall -Wextra -o build/bench/raw bench/raw.c $MY_CFLAGS $MY_LIBS || exit 1
    for l in lua5.4 luajit; do
        inc=$(pkg-config --cflags "$l") libs=$(pkg-config --libs "$l")
        cc -O2 -g -Wall -Wextra -fPIC -shared $inc -o "build/bench/$l/benchclock.so" bench/benchclock.c || exit 1
        cc -O2 -g -Wall -Wextra $inc -o "build/bench/threads-$l" bench/threads.c $libs -lpthread -lm -ldl -Wl,-E || exit 1
    done
    args=(--rounds "$rounds")
    [ "$mode" = plain ] && args+=(--plain)
    [ "$pin_server" = 0 ] && args+=(--server-free)
    [ "$quick" = 1 ] && args+=(--quick)
    [ -n "$only" ] && args+=(--only "$only")
    exec bash spec/support/with-db.sh bash bench/run.sh --inner "${args[@]}"
fi

# ---- inside: a server is up ---------------------------------------------------
SOCK=${SCOPED_TEST_SOCKET:?run me through spec/support/with-db.sh}
PY=/usr/bin/python3
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
mariadb --no-defaults --socket="$SOCK" -uroot scoped_test <bench/setup.sql || { say "setup.sql failed"; exit 1; }

# Other work on the machine (a test suite, a build) is the worst noise of
# all: say so, and put the load average in the table's header
load0=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load0" 'BEGIN { exit !(l > 0.7) }'; then
    say "WARNING: load average $load0 before starting: something else is running; the figures will be noisy"
fi

ncpu=$(nproc)
CPU=$((ncpu - 1))   # the benchmark's CPU
BUSY_CPU=0          # the one kept awake
busy_pid=""
stop_busy() {
    if [ -n "$busy_pid" ]; then
        kill "$busy_pid" 2>/dev/null
        wait "$busy_pid" 2>/dev/null
        busy_pid=""
    fi
}
trap stop_busy EXIT
trap 'stop_busy; exit 130' INT
trap 'stop_busy; exit 143' TERM
server_pin="server not pinned"
if [ "$ncpu" -lt 2 ]; then
    say "one CPU only: plain mode, nothing pinned"
    mode=plain
    PIN=()
else
    PIN=(taskset -c "$CPU")
    # The server on the benchmarks' CPU too: a round trip is then two context
    # switches on one CPU instead of a wake-up on the other, which on these
    # VMs can cost 20-100 us and comes and goes (on one machine round trips
    # were bimodal, 50 vs 110 us, with the server free to move; on another
    # it made no difference). Only our own
    # throwaway server (with-db.sh's datadir); one given by the user is left
    # alone.
    pidfile=${SCOPED_TEST_DATADIR:+$SCOPED_TEST_DATADIR/mysqld.pid}
    if [ "$pin_server" = 1 ] && [ -n "$pidfile" ] && [ -r "$pidfile" ] && taskset -a -p -c "$CPU" "$(cat "$pidfile")" >/dev/null; then
        server_pin="server pinned to CPU $CPU"
    fi
fi
if [ "$mode" = busy ]; then
    # lowest priority there is (SCHED_IDLE): it only runs when CPU 0 has
    # nothing else to do, and keeps it from going idle; stopped by its pid
    taskset -c "$BUSY_CPU" chrt --idle 0 nice -n 19 bash -c 'while :; do :; done' &
    busy_pid=$!
    say "busy loop pid $busy_pid on CPU $BUSY_CPU (SCHED_IDLE, nice 19); benchmarks on CPU $CPU"
else
    say "plain mode: no busy loop; benchmarks on CPU ${CPU}"
fi

# ---- what runs what -----------------------------------------------------------
SYSTEMS=(raw luasql-5.4 luasql-jit sqla scoped-5.4 scoped-jit)
WORKLOADS=(w1 w2 w2s w3 w3stream w4one w4batch w4multi lookup w5thr w5co)
if [ -n "$only" ]; then IFS=, read -r -a WORKLOADS <<<"$only"; fi

# The interleaved workloads (bench/interleave.py): iterations per slice
# (SLICE_N, about 20-40 ms for W2/W2s, one fetch or one 10,000-row
# transaction for W3/W4) and slices per round (SLICES); the round's figure is
# the median of its slices, except for W3 (AGGREGATE): all its slices' rows
# over all their time, as the Lua collectors' big cycle comes every other
# fetch (bench/interleave.py)
INTERLEAVED=" w2 w2s w3 w3stream w4one w4batch "
declare -A SLICE_N=(
    [w2]=750 [w2.sqla]=400
    [w2s]=400 [w2s.sqla]=100
    [w3]=1 [w3stream]=1
    [w4one]=10000 [w4batch]=10000
)
declare -A SLICES=([w2]=15 [w2s]=15 [w3]=4 [w3stream]=4 [w4one]=3 [w4batch]=5)
AGGREGATE=" w3 w3stream "
# W2 and W2s with io_wait (issue 19), scoped only: run as more systems of the
# same interleave as blocking W2/W2s and raw C, so that their ratios compare
# slices taken side by side. Each is a workload of bench/scoped_bench.lua;
# the table has it as a row of its own (workload w2_cqueues, ...), with the
# figure under the scoped column of its runtime.
declare -A VARIANTS=(
    [w2]="w2_cqueues w2_luv"
    [w2s]="w2s_cqueues w2s_luv w2s_cqueues4 w2s_luv4"
)
declare -A UNIT=([w2]=us [w2s]=us [w3]=rate [w3stream]=rate [w4one]=rate [w4batch]=rate)
slice_n_for() {   # workload system (a variant takes its base's n)
    local n=${SLICE_N[$1.$2]:-${SLICE_N[$1]}}
    if [ "$quick" = 1 ] && { [ "$1" = w2 ] || [ "$1" = w2s ]; }; then n=$((n / 10)); fi
    echo "$n"
}

# iterations per workload for the others, one process per measurement: each
# takes roughly 0.2-0.8 s here
declare -A N=(
    [w1]=200000 [w1.sqla]=10000
    [w4multi]=10000
    [lookup]=1000000 [lookup.sqla]=300000
    [w5thr]=1000 [w5thr.sqla]=2400
    [w5co]=4000
    [w2s_count]=1000
)
n_for() {   # workload system
    local n=${N[$1.$2]:-${N[$1]}}
    if [ "$quick" = 1 ] && [ "$1" != w4multi ]; then
        n=$(( n / 10 > 0 ? n / 10 : 1 ))
    fi
    echo "$n"
}

# The code measured: a copy of lua/ and of both core.so taken now, so that
# someone rebuilding build/ or editing lua/ during the run changes nothing
SNAP=$ROOT/build/bench/snapshot
rm -rf "$SNAP"
mkdir -p "$SNAP/lua5.4/scoped" "$SNAP/luajit/scoped"
cp -R lua "$SNAP/lua"
cp build/lua5.4/scoped/core.so "$SNAP/lua5.4/scoped/core.so" || exit 1
cp build/luajit/scoped/core.so "$SNAP/luajit/scoped/core.so" || exit 1
changed=$(git status --porcelain -- csrc lua 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
changed=${changed% }
code="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)${changed:+ + uncommitted changes in $changed}"

lua_env() {   # lua binary
    echo "LUA_PATH=$SNAP/lua/?.lua;$SNAP/lua/?/init.lua;$ROOT/bench/?.lua;; LUA_CPATH=$SNAP/$1/?.so;$ROOT/build/bench/$1/?.so;;"
}

# prints the command line for system + workload, or nothing when the system
# has no such workload; a third argument "serve" asks for the serve mode of
# bench/interleave.py instead of n iterations
cmd_for() {
    local sys=$1 w=$2 n
    n=${3:-$(n_for "$w" "$sys")}
    case $sys in
        raw)
            # w3stream: raw C's W3 (the same rows, every cell touched) as the yardstick
            case $w in w2|w2s|w2s_count|w3|w4one|w4batch) echo "build/bench/raw $SOCK $w $n" ;;
                w3stream) echo "build/bench/raw $SOCK w3 $n" ;; esac ;;
        luasql-5.4|luasql-jit)
            local l=lua5.4; [ "$sys" = luasql-jit ] && l=luajit
            # w3stream: LuaSQL's reuse idiom, cur:fetch(row, "n")
            case $w in w2|w2s|w2s_count|w3|w3stream|w4one|w4batch)
                echo "env MYSQL_UNIX_PORT=$SOCK $(lua_env $l) $l bench/luasql_bench.lua $SOCK $w $n" ;; esac ;;
        sqla)
            case $w in w1|w2|w2s|w2s_count|w3|w4one|w4batch|lookup|w5thr)
                echo "$PY bench/sqlalchemy_bench.py $SOCK $w $n" ;; esac ;;
        scoped-5.4|scoped-jit)
            local l=lua5.4; [ "$sys" = scoped-jit ] && l=luajit
            case $w in
                w5thr) echo "env $(lua_env $l) build/bench/threads-$l $SOCK 8 $n" ;;
                w1|w2|w2s|w2s_count|w3|w3stream|w4one|w4batch|w4multi|lookup|w5co|w2_cqueues|w2_luv|w2s_cqueues|w2s_luv|w2s_cqueues4|w2s_luv4)
                    echo "env $(lua_env $l) $l bench/scoped_bench.lua $SOCK $w $n" ;;
            esac ;;
    esac
}

mkdir -p bench/results
# latest.md / latest-plain.md are kept (committed); a --quick smoke test's
# files end in .tmp (ignored)
suffix=""; [ "$mode" = plain ] && suffix="-plain"
[ "$pin_server" = 0 ] && suffix="$suffix-server-free"
ext=""; [ "$quick" = 1 ] && { suffix="$suffix-quick"; ext=".tmp"; }
TSV=bench/results/latest$suffix.tsv$ext
LOG=bench/results/run$suffix.log.tmp
: >"$TSV"
: >"$LOG"
failures=0
measured=0   # measurements that gave a figure

# runs one measurement, appends "round workload system key value" lines
measure() {   # round system workload
    local r=$1 sys=$2 w=$3 cmd out rc
    cmd=$(cmd_for "$sys" "$w")
    [ -z "$cmd" ] && return 0
    echo "## round $r $sys $w: $cmd" >>"$LOG"
    # shellcheck disable=SC2086  # the command line is built to be split
    set -f   # no globbing of the ? in LUA_PATH
    out=$(cd "$ROOT" && timeout 300 "${PIN[@]}" $cmd 2>>"$LOG")
    rc=$?
    set +f
    echo "$out" >>"$LOG"
    if [ $rc -ne 0 ] || ! grep -q '^RESULT ' <<<"$out"; then
        say "FAILED ($rc): $sys $w (see $LOG)"
        failures=$((failures + 1))
        printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$w" "$sys" error "$rc" >>"$TSV"
        return 0
    fi
    measured=$((measured + 1))
    awk -v r="$r" -v w="$w" -v s="$sys" '
        $1 == "RESULT" { printf "%s\t%s\t%s\tvalue\t%s\n", r, w, s, $2 }
        $1 == "EXTRA"  { printf "%s\t%s\t%s\t%s\t%s\n", r, w, s, $2, $3 }' <<<"$out" >>"$TSV"
}

# one interleave.py run of workload w over every system that has it, and of
# w's VARIANTS (named SYSTEM/VARIANT there); appends the same TSV lines as
# measure(), a variant's under its own workload name
measure_interleaved() {   # round workload
    local r=$1 w=$2 sys cmd spec=() out rc i v nsys=${#SYSTEMS[@]}
    for ((i = 0; i < nsys; i++)); do
        sys=${SYSTEMS[$i]}
        cmd=$(cmd_for "$sys" "$w" serve)
        [ -n "$cmd" ] && spec+=("$sys" "$(slice_n_for "$w" "$sys")" "$cmd")
    done
    for v in ${VARIANTS[$w]:-}; do
        for ((i = 0; i < nsys; i++)); do
            sys=${SYSTEMS[$i]}
            cmd=$(cmd_for "$sys" "$v" serve)
            [ -n "$cmd" ] && spec+=("$sys/$v" "$(slice_n_for "$w" "$sys")" "$cmd")
        done
    done
    local slices=${SLICES[$w]} aggregate=()
    [ "$quick" = 1 ] && slices=3
    [[ $AGGREGATE == *" $w "* ]] && aggregate=(--aggregate)
    echo "## round $r $w interleaved: ${#spec[@]} args, $slices slices" >>"$LOG"
    out=$(cd "$ROOT" && INTERLEAVE_DEBUG=1 timeout 1200 "${PIN[@]}" "$PY" bench/interleave.py \
        --slices "$slices" --unit "${UNIT[$w]}" "${aggregate[@]}" --round "$r" "${spec[@]}" 2>>"$LOG")
    rc=$?
    echo "$out" >>"$LOG"
    [ $rc -ne 0 ] && say "interleave.py exited $rc for $w (see $LOG)"
    for ((i = 0; i < ${#spec[@]}; i += 3)); do
        local name=${spec[$i]} fig tw=$w
        sys=${name%%/*}
        [ "$name" != "$sys" ] && tw=${name#*/}
        fig=$(awk -v s="$name" '$1 == "RESULT" && $2 == s { print $3 }' <<<"$out")
        if [ -z "$fig" ]; then
            say "FAILED: $sys $tw (see $LOG)"
            failures=$((failures + 1))
            printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$tw" "$sys" error "$rc" >>"$TSV"
        else
            printf '%s\t%s\t%s\tvalue\t%s\n' "$r" "$tw" "$sys" "$fig" >>"$TSV"
            measured=$((measured + 1))
        fi
    done
}

# CPU time the hypervisor gave to others while we measured ("steal", all
# CPUs): a run with much of it is a run on a busy host
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9}' /proc/stat; }
read -r ticks0 steal0 < <(cpu_ticks)
start=$(date +%s)
nsys=${#SYSTEMS[@]}
for ((r = 1; r <= rounds; r++)); do
    say "round $r/$rounds"
    for w in "${WORKLOADS[@]}"; do
        if [[ $INTERLEAVED == *" $w "* ]]; then
            measure_interleaved "$r" "$w"
            continue
        fi
        for ((i = 0; i < nsys; i++)); do
            measure "$r" "${SYSTEMS[$(((i + r - 1) % nsys))]}" "$w"
        done
    done
done
say "statements per W2s request (server counters)"
for sys in "${SYSTEMS[@]}"; do measure 1 "$sys" w2s_count; done
stop_busy
elapsed=$(($(date +%s) - start))
read -r ticks1 steal1 < <(cpu_ticks)
steal=$(awk -v a=$((steal1 - steal0)) -v b=$((ticks1 - ticks0)) 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }')

# ---- the table ------------------------------------------------------------------
META=$(mktemp "${TMPDIR:-/tmp}/bench-meta.XXXXXX")
{
    echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "mode	$mode"
    echo "rounds	$rounds"
    echo "quick	$quick"
    echo "elapsed	$elapsed"
    echo "steal	$steal"
    echo "load	$load0 before, $(cut -d' ' -f1 /proc/loadavg) after (1-minute load average; ours is 1-2)"
    echo "cpu	$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) x $ncpu"
    echo "kernel	$(uname -r)"
    echo "pin	benchmarks on CPU $CPU, $server_pin$([ "$mode" = busy ] && echo ", busy loop on CPU $BUSY_CPU")"
    echo "server	$(mariadbd --version 2>/dev/null | awk '{print $3}')"
    echo "client	MariaDB Connector/C $(mariadb_config --cc_version 2>/dev/null || true)"
    echo "lua	$(lua5.4 -v 2>&1 | awk '{print $1, $2}'); $(luajit -v 2>&1 | awk '{print $1, $2}')"
    echo "python	$($PY -c 'import sys, sqlalchemy, MySQLdb; print("Python %d.%d.%d" % sys.version_info[:3], "SQLAlchemy", sqlalchemy.__version__, "mysqlclient", MySQLdb.__version__)')"
    echo "commit	$code"
} >"$META"
OUT=bench/results/latest$suffix.md$ext
# a full run in the default mode also refreshes the table in bench/README.md
# and in the top README.md
readme=()
[ "$mode" = busy ] && [ "$pin_server" = 1 ] && [ "$quick" = 0 ] && [ -z "$only" ] && readme=(bench/README.md README.md)
lua5.4 bench/report.lua "$TSV" "$META" "$OUT" "${readme[@]}"
rc=$?
rm -f "$META"
say "table written to $OUT (raw figures: $TSV); ${elapsed}s of measuring"
# the OpenResty load test (bench/ngx.sh, its own table: bench/results/ngx-latest.md)
if [ -z "$only" ] || [[ ",$only," == *",ngx,"* ]]; then
    ngx_args=()
    [ "$quick" = 1 ] && ngx_args=(--quick)
    stop_busy
    bash bench/ngx.sh "${ngx_args[@]}"
    case $? in
        0) measured=$((measured + 1)) ;;
        3) say "OpenResty load test skipped (see above)" ;;
        *) failures=$((failures + 1)); say "OpenResty load test failed" ;;
    esac
fi
# the counts in the form .ci/run reads (`make bench-smoke` is a CI stage): a
# measurement passes when its program gave a figure; the table counts as one
[ "$rc" = 0 ] && measured=$((measured + 1)) || failures=$((failures + 1))
echo "$measured passed, $failures failed"
[ "$failures" -gt 0 ] && { say "$failures measurement(s) failed"; exit 1; }
exit 0
