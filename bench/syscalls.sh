#!/usr/bin/env bash
# bench/syscalls.sh [WORKLOAD...] — system calls per operation under
# `strace -c -f`, blocking next to io_wait (issue 19), for raw C and scoped
# on Lua 5.4 and LuaJIT.
#
#   bash bench/syscalls.sh                  # w2 w2_cqueues w2_luv w2s w2s_cqueues w2s_luv
#                                           # w2wait w2wait_cqueues w2wait_luv (one wait each)
#   bash bench/syscalls.sh w2s_cqueues4     # any workload of bench/scoped_bench.lua
#
# As bench/profile.sh does with instructions: each workload runs at two sizes
# with no warm-up (BENCH_NOWARM=1) and the counts are subtracted, so start-up
# and connecting cancel out. Counts per operation, each system call that
# makes at least 0.01 of one, and their total; "waits": the reads that found
# no reply yet (recvfrom's EAGAIN), each followed by one wait, and the other
# calls (not sendto/recvfrom) per wait: what one wait costs in system calls.
# Whether a statement waits at all depends on scheduling (the server may
# answer before the first read), so compare calls per wait rather than
# totals. raw C runs w2 and w2s only
# (the yardstick of their variants). Output: stdout and
# bench/results/syscalls-latest.txt. Uses build/ as it is (run `make bench`
# or its build steps first).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

if [ -z "${SCOPED_TEST_SOCKET:-}" ]; then
    exec bash spec/support/with-db.sh bash bench/syscalls.sh "$@"
fi
SOCK=$SCOPED_TEST_SOCKET
command -v strace >/dev/null || { echo "syscalls.sh: strace missing (bash spec/support/deps.sh strace)" >&2; exit 1; }
for f in build/bench/raw build/lua5.4/scoped/core.so build/luajit/scoped/core.so build/bench/lua5.4/benchclock.so; do
    [ -e "$f" ] || { echo "syscalls.sh: $f missing: run make bench first" >&2; exit 1; }
done
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
# Pinned as bench/run.sh pins: the programs (and strace) on the last CPU and
# our throwaway server's threads there too. How many waits a statement makes
# depends on whether the reply is there at the first read, so on scheduling;
# pinned, both runs see the same order of events.
CPU=$(($(nproc) - 1))
PIN=(taskset -c "$CPU")
pidfile=${SCOPED_TEST_DATADIR:+$SCOPED_TEST_DATADIR/mysqld.pid}
[ -n "$pidfile" ] && [ -r "$pidfile" ] && taskset -a -p -c "$CPU" "$(cat "$pidfile")" >/dev/null
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(w2 w2_cqueues w2_luv w2s w2s_cqueues w2s_luv w2wait w2wait_cqueues w2wait_luv)
SMALL=500 BIG=2500

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-sys.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
OUT=bench/results/syscalls-latest.txt
mkdir -p bench/results
CODE=$(git describe --always --dirty 2>/dev/null)
: >"$OUT"

# "name calls" per system call of an strace -c file (the errors column may
# be empty, so calls is the 4th field either way), and "recvfrom_EAGAIN n":
# the reads that found no reply yet, each followed by one wait (poll(2) in
# the blocking driver, io_wait with the adapters)
counts() {
    awk '$NF != "total" && $NF != "syscall" && $1 ~ /^[0-9.]+$/ {
        print $NF, $4
        if ($NF == "recvfrom") print "recvfrom_EAGAIN", (NF == 6 ? $5 : 0)
    }' "$1"
}

run() {   # label n cmd...
    local label=$1 n=$2
    shift 2
    BENCH_NOWARM=1 "${PIN[@]}" strace -c -f -o "$tmp/$label.$n" "$@" >"$tmp/$label.$n.out" 2>&1 \
        || { echo "syscalls.sh: $label failed:"; cat "$tmp/$label.$n.out"; return 1; } >&2
}

echo "# strace -c -f, system calls per operation ($(date -u '+%Y-%m-%d %H:%M UTC'), code $CODE)" | tee -a "$OUT"
for w in "${workloads[@]}"; do
    for sys in raw lua5.4 luajit; do
        if [ "$sys" = raw ]; then
            case $w in w2|w2s) ;; *) continue ;; esac
        fi
        label="$w-$sys"
        for n in $SMALL $BIG; do
            if [ "$sys" = raw ]; then
                run "$label" "$n" build/bench/raw "$SOCK" "$w" "$n" || continue 3
            else
                (export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/bench/?.lua;;" \
                    LUA_CPATH="$ROOT/build/$sys/?.so;$ROOT/build/bench/$sys/?.so;;"
                 run "$label" "$n" "$sys" bench/scoped_bench.lua "$SOCK" "$w" "$n") || continue 2
            fi
        done
        what="scoped $sys"; [ "$sys" = raw ] && what="raw C"
        {
            printf '%-14s %-10s' "$w" "$what"
            join -a 2 -e 0 -o 0,1.2,2.2 <(counts "$tmp/$label.$SMALL" | sort) <(counts "$tmp/$label.$BIG" | sort) |
                awk -v d=$((BIG - SMALL)) '
                    $1 == "recvfrom_EAGAIN" { waits = ($3 - $2) / d; next }
                    { per = ($3 - $2) / d
                      if ($1 != "sendto" && $1 != "recvfrom") other += per
                      if (per >= 0.01) { t += per; s = s sprintf(" %s %.2f", $1, per) } }
                    END { printf " total %.2f, waits %.2f, calls per wait besides send/recv %s:%s\n", t, waits,
                          (waits > 0.01 ? sprintf("%.1f", other / waits) : "-"), s }'
        } | tee -a "$OUT"
    done
done
echo "syscalls.sh: written to $OUT" >&2
