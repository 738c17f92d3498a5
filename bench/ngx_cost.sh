#!/usr/bin/env bash
# bench/ngx_cost.sh — what one wait for the server costs inside nginx, per
# mode: system calls (strace -c over every thread of the worker) and
# instructions (valgrind callgrind, nginx in one process) per request of one
# SELECT 1, for scoped inline (blocking), nb (io_wait in nginx's epoll),
# offload (thread pool), bell and lua-resty-mysql. One request = one statement =
# one wait, so nb less inline is the cost of a non-blocking wait. bell is
# design (b) of issue 19 (bench/ngx/doorbell.c: a helper thread, a doorbell
# cosocket).
#
#   bash spec/support/with-db.sh bash bench/ngx_cost.sh [N]     (default N 2000)
#
# Figures go to stdout (markdown); not part of `make bench` (callgrind is slow).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
N=${1:-2000}
URL=${SCOPED_TEST_URL:?run me through spec/support/with-db.sh}
PEERS=${SCOPED_PEERS:-$(cd "$ROOT/.." && pwd)/shared/peers}
NGINX=${NGINX:-/usr/sbin/nginx}
. spec/support/free-port.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-ngx-cost.XXXXXX") || exit 1
mariadb --no-defaults --socket="${SCOPED_TEST_SOCKET:?}" -uroot scoped_test <bench/ngx/users.sql || exit 1
pid=""
stop() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; [ -n "$pid" ] && { wait "$pid"; } 2>/dev/null; pid=""; }
trap 'stop; rm -rf -- "$tmp"' EXIT

start() {   # wrapper...: nginx in one process (master_process off)
    port=$(free_port) || exit 1
    sed -e "s|@PREFIX@|$tmp|g" -e "s|@ROOT@/build/bench/ngx/?.so|$ROOT/build/luajit/?.so;$tmp/?.so|g" -e "s|@ROOT@|$ROOT|g" \
        -e "s|@PORT@|$port|g" -e "s|@USER@|user root;|g" -e "s|@PEERS@|$PEERS|g" -e "s|@CAP@|2|g" -e "s|@WIDE@|2|g" \
        -e "s|@WORKERS@|1|g" -e "s|@MASTER@|off|g" bench/ngx/nginx.conf.in >"$tmp/nginx.conf"
    : >"$tmp/error.log"
    SCOPED_TEST_URL=$URL "$@" "$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" </dev/null >"$tmp/out.log" 2>&1 &
    pid=$!
    for ((i = 0; i < 600; i++)); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/ping" && return 0
        sleep 0.1
    done
    echo "nginx did not start"; tail "$tmp/error.log" "$tmp/out.log"; exit 1
}

requests() {   # path n: n requests one after the other on one keep-alive connection
    local f=$tmp/curl.cfg i
    : >"$f"
    for ((i = 0; i < $2; i++)); do printf 'url = "http://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$port" "$1" >>"$f"; done
    curl -s -K "$f" -w '%{http_code}\n' | grep -vc '^200$' | { read -r bad; [ "$bad" = 0 ] || echo "# $bad non-200 answers for $1" >&2; }
}

W=${COST_WORK:-select1}   # or unit: INSERT + SELECT + COMMIT
path_for() { [ "$1" = resty ] && echo "/resty/$W" || echo "/scoped/$1/$W"; }
read -r -a MODES <<<"${COST_MODES:-inline nb offload bell resty}"
cc -std=c99 -Wall -Wextra -Werror -O2 -g -fPIC -shared -pthread -o "$tmp/doorbell.so" bench/ngx/doorbell.c || exit 1

echo "| per request of $W ($N requests, 1 worker, keep-alive) | ${MODES[*]} |"
# ---- system calls
start
declare -A calls top
for m in "${MODES[@]}" ping; do
    p=$(path_for "$m"); [ "$m" = ping ] && p=/ping
    requests "$p" 200
    args=(); for t in /proc/$pid/task/*; do args+=(-p "${t##*/}"); done
    strace -c -f -o "$tmp/strace.$m" "${args[@]}" 2>/dev/null &
    spid=$!
    sleep 0.5
    requests "$p" "$N"
    kill -INT "$spid"; wait "$spid" 2>/dev/null
    calls[$m]=$(awk -v n="$N" '$NF == "total" {printf "%.1f", $4 / n}' "$tmp/strace.$m")
    top[$m]=$(awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {printf "%s %.1f, ", $NF, $4 / n}' "$tmp/strace.$m" | cut -c1-200)
done
stop
row="| system calls (less /ping's ${calls[ping]}) |"
for m in "${MODES[@]}"; do row+=" $(awk -v a="${calls[$m]}" -v b="${calls[ping]}" 'BEGIN {printf "%.1f", a - b}') |"; done
echo "$row"
for m in "${MODES[@]}" ping; do echo "#   $m: ${top[$m]}"; done

# ---- instructions (callgrind; LuaJIT's machine code included)
if command -v valgrind >/dev/null 2>&1; then
    start valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" --dump-instr=no --collect-atstart=yes
    declare -A ir
    nn=$((N / 4))
    for m in "${MODES[@]}" ping; do
        p=$(path_for "$m"); [ "$m" = ping ] && p=/ping
        requests "$p" 100
        callgrind_control -z "$pid" >/dev/null 2>&1
        requests "$p" "$nn"
        callgrind_control -d "$m" "$pid" >/dev/null 2>&1
        sleep 0.5
        f=$(ls -t "$tmp"/cg.*.* 2>/dev/null | head -n 1)
        ir[$m]=$(awk -v n="$nn" '/^summary:/ {printf "%.0f", $2 / n} /^totals:/ {t = $2} END {}' "$f")
        rm -f "$f"
    done
    stop
    row="| instructions (less /ping's ${ir[ping]}) |"
    for m in "${MODES[@]}"; do row+=" $(( ${ir[$m]:-0} - ${ir[ping]:-0} )) |"; done
    echo "$row"
fi
# ---- per wait, no database: /waitloop/MODE (K waits on a socketpair in one
# request; the write and read around each wait included, as in every mode)
K=2000
echo
echo "| per wait, no database (a socketpair, $K waits in one request; write + wait + read) | nb (design a) | bell (design b) |"
start
declare -A wcalls wtop
for m in nb bell; do
    requests "/waitloop/$m?k=100" 2
    args=(); for t in /proc/$pid/task/*; do args+=(-p "${t##*/}"); done
    strace -c -f -o "$tmp/wstrace.$m" "${args[@]}" 2>/dev/null &
    spid=$!
    sleep 0.5
    requests "/waitloop/$m?k=$K" 1
    kill -INT "$spid"; wait "$spid" 2>/dev/null
    wcalls[$m]=$(awk -v n="$K" '$NF == "total" {printf "%.1f", $4 / n}' "$tmp/wstrace.$m")
    wtop[$m]=$(awk -v n="$K" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" && $4 / n >= 0.05 {printf "%s %.2f, ", $NF, $4 / n}' "$tmp/wstrace.$m")
done
t0=$(date +%s.%N); requests "/waitloop/nb?k=$K" 5; t1=$(date +%s.%N); requests "/waitloop/bell?k=$K" 5; t2=$(date +%s.%N)
stop
echo "| system calls, all threads | ${wcalls[nb]} | ${wcalls[bell]} |"
echo "| wall time per wait (us, unpinned, 5 x $K) | $(awk -v a="$t0" -v b="$t1" -v k="$K" 'BEGIN {printf "%.1f", (b - a) * 1e6 / (5 * k)}') | $(awk -v a="$t1" -v b="$t2" -v k="$K" 'BEGIN {printf "%.1f", (b - a) * 1e6 / (5 * k)}') |"
for m in nb bell; do echo "#   $m: ${wtop[$m]}"; done
if command -v valgrind >/dev/null 2>&1; then
    start valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" --dump-instr=no --collect-atstart=yes
    declare -A wir
    for m in nb bell; do
        requests "/waitloop/$m?k=100" 2
        callgrind_control -z "$pid" >/dev/null 2>&1
        requests "/waitloop/$m?k=$K" 1
        callgrind_control -d "w$m" "$pid" >/dev/null 2>&1
        sleep 0.5
        f=$(ls -t "$tmp"/cg.*.* 2>/dev/null | head -n 1)
        wir[$m]=$(awk -v n="$K" '/^summary:/ {printf "%.0f", $2 / n}' "$f")
        rm -f "$f"
    done
    stop
    echo "| instructions, all threads (user space) | ${wir[nb]} | ${wir[bell]} |"
fi
grep -E '\[(alert|crit|error)\]' "$tmp/error.log" | head -n 5
exit 0
