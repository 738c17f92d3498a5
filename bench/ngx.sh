#!/usr/bin/env bash
# bench/ngx.sh — the OpenResty load test (issue 19): scoped inline
# (blocking), offload (thread pool) and non-blocking (io_wait in nginx's
# event loop), beside lua-resty-mysql 0.29, in one nginx with 2 workers, on
# one MariaDB, with equal connection caps per worker. Run by bench/run.sh
# (inside spec/support/with-db.sh: SCOPED_TEST_URL is set), or alone:
#
#   bash spec/support/with-db.sh bash bench/ngx.sh [--quick] [--rounds N] [--secs S] [--with-b]
#
# --with-b adds design (b) of issue 19 (a helper thread polling the fds and
# a doorbell cosocket: bench/ngx/doorbell.c, a prototype kept for this).
#
# Two workloads, each request one unit of work, at concurrency 50 (wrk, 2
# threads, keep-alive connections):
#   sleep  one SELECT SLEEP(0.02)
#   unit   INSERT + SELECT of that row + COMMIT (lua-resty-mysql: BEGIN first)
# Each round runs every system on every workload for S seconds after a
# warm-up (pools full), the systems' order rotated each round; each cell is
# the median over rounds. Zero errors are required (non-2xx, socket errors),
# and the nginx error.log, after a graceful quit, must have no alert.
# Writes bench/results/ngx-latest.md and .tsv (--quick: .tmp files).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
rounds=3 secs=5 warm=1 quick=0 conc=50 cap=10 with_b=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; rounds=1; secs=1; warm=0.5 ;;
        --rounds) rounds=$2; shift ;;
        --secs) secs=$2; shift ;;
        --with-b) with_b=1 ;;
        *) echo "bench/ngx.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
say() { echo "bench/ngx: $*" >&2; }
URL=${SCOPED_TEST_URL:?run me through spec/support/with-db.sh}
SOCK=${SCOPED_TEST_SOCKET:?run me through spec/support/with-db.sh}
PEERS=${SCOPED_PEERS:-$(cd "$ROOT/.." && pwd)/shared/peers}
NGINX=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
missing=""
[ -x "$NGINX" ] || missing+=" nginx"
command -v wrk >/dev/null 2>&1 || missing+=" wrk"
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing+=" libnginx-mod-http-lua"
[ -f "$PEERS/lua-resty-mysql/lib/resty/mysql.lua" ] || missing+=" $PEERS/lua-resty-mysql (the benchmark peer)"
[ -f build/luajit/scoped/core.so ] || missing+=" build/luajit/scoped/core.so"
if [ -n "$missing" ]; then say "skipped, missing:$missing"; exit 3; fi
nb_note=""
[ -f build/luajit/scoped/ngx_wait.so ] || nb_note="ngx_wait.so not built (no nginx-dev): nb blocks like inline"

suffix=""; ext=""; [ "$quick" = 1 ] && ext=".tmp"
TSV=bench/results/ngx-latest.tsv$ext
OUT=bench/results/ngx-latest.md$ext
mkdir -p bench/results

# the code measured: a snapshot (as bench/run.sh's)
SNAP=$ROOT/build/bench/ngx
rm -rf "$SNAP"
mkdir -p "$SNAP/scoped"
cp -R lua "$SNAP/lua"
cp build/luajit/scoped/core.so "$SNAP/scoped/core.so" || exit 1
[ -f build/luajit/scoped/ngx_wait.so ] && cp build/luajit/scoped/ngx_wait.so "$SNAP/scoped/"
# design (b)'s prototype (--with-b)
cc -std=c99 -Wall -Wextra -Werror -O2 -g -fPIC -shared -pthread -o "$SNAP/doorbell.so" bench/ngx/doorbell.c || exit 1

mariadb --no-defaults --socket="$SOCK" -uroot scoped_test <bench/ngx/users.sql \
    || { say "bench/ngx/users.sql failed"; exit 1; }
wide=$((conc / 2))   # connections per worker that conc requests over 2 workers can use at most

. spec/support/free-port.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-ngx-bench.XXXXXX") || exit 1
nginx_pid=""
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop_nginx() {   # graceful (nginx -s quit), as a deploy would
    local i
    [ -n "$nginx_pid" ] || return 0
    if alive "$nginx_pid"; then
        kill -QUIT "$nginx_pid" 2>/dev/null
        for ((i = 0; i < 300; i++)); do alive "$nginx_pid" || break; sleep 0.1; done
        alive "$nginx_pid" && { say "nginx did not quit in 30 s: killing it"; kill -KILL "$nginx_pid"; }
    fi
    { wait "$nginx_pid"; } 2>/dev/null
    nginx_pid=""
}
cleanup() { stop_nginx; rm -rf -- "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

user_line="# (not root)"; [ "$(id -u)" = 0 ] && user_line="user root;"
port=$(free_port) || exit 1
sed -e "s|@PREFIX@|$tmp|g" -e "s|@ROOT@/lua|$SNAP/lua|g" -e "s|@ROOT@/build/bench/ngx|$SNAP|g" \
    -e "s|@ROOT@|$ROOT|g" -e "s|@PORT@|$port|g" -e "s|@USER@|$user_line|g" -e "s|@PEERS@|$PEERS|g" \
    -e "s|@CAP@|$cap|g" -e "s|@WIDE@|$wide|g" -e "s|@WORKERS@|2|g" -e "s|@MASTER@|on|g" bench/ngx/nginx.conf.in >"$tmp/nginx.conf"
SCOPED_TEST_URL=$URL "$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" </dev/null >"$tmp/stdout.log" 2>&1 &
nginx_pid=$!
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/ping" && break
    alive "$nginx_pid" || break
    sleep 0.1
done
if ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/ping"; then
    say "nginx did not start:"; tail -n 20 "$tmp/error.log" "$tmp/stdout.log" >&2; exit 1
fi
say "nginx pid $nginx_pid on 127.0.0.1:$port, 2 workers, $cap connections per worker for every system"

SYSTEMS=(inline offload nb nbwide nbover resty)
[ "$with_b" = 1 ] && SYSTEMS=(inline offload nb nbwide nbover bell resty)
# the most connections the server saw for system $1 while a cell ran: sampled
# from its processlist every 0.2 s (each system connects as its own user)
peak_start() {
    ( peak=0
      while [ ! -f "$tmp/peak.stop" ]; do
          n=$(mariadb --no-defaults --socket="$SOCK" -uroot -N -e \
              "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'b_$1'" 2>/dev/null)
          [ "${n:-0}" -gt "$peak" ] && peak=$n
          echo "$peak" >"$tmp/peak"
          sleep 0.2
      done ) </dev/null >/dev/null 2>&1 &
    peak_pid=$!
}
peak_stop() {   # sets peak (not in a subshell: it waits for the sampler)
    touch "$tmp/peak.stop"
    wait "$peak_pid" 2>/dev/null
    rm -f "$tmp/peak.stop"
    peak=$(cat "$tmp/peak" 2>/dev/null || echo 0)
}
path_for() { [ "$1" = resty ] && echo "/resty/$2" || echo "/scoped/$1/$2"; }
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; printf "%.2f", v }' <<<"$1"; }
: >"$TSV"
failures=0
load0=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s)
for ((r = 1; r <= rounds; r++)); do
    for w in sleep unit; do
        for ((k = 0; k < ${#SYSTEMS[@]}; k++)); do
            sys=${SYSTEMS[$(((k + r - 1) % ${#SYSTEMS[@]}))]}
            url="http://127.0.0.1:$port$(path_for "$sys" "$w")"
            wrk -t2 -c"$conc" -d"${warm}s" --timeout 30s "$url" >/dev/null 2>&1
            peak_start "$sys"
            out=$(wrk -t2 -c"$conc" -d"${secs}s" --timeout 30s --latency "$url" 2>&1)
            peak_stop
            echo "## round $r $w $sys" >>"$tmp/wrk.log"; echo "$out" >>"$tmp/wrk.log"
            rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
            p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
            p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
            non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
            sockerr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
            errs=$(( ${non2xx:-0} + ${sockerr:-0} ))
            [ -z "$rps" ] && { errs=$((errs + 1)); rps=0; }
            [ "$errs" -gt 0 ] && failures=$((failures + 1))
            say "round $r $w $sys: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $errs, peak connections $peak"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$w" "$sys" "$rps" "$p50" "$p99" "$errs" "$peak" >>"$TSV"
        done
    done
done
elapsed=$(($(date +%s) - start))
stop_nginx
alerts=$(grep -cE '\[(alert|crit|emerg)\]' "$tmp/error.log")
errlines=$(grep -c '\[error\]' "$tmp/error.log")
if [ "$alerts" != 0 ] || [ "$errlines" != 0 ]; then
    say "error.log: $alerts alert lines, $errlines error lines:"; grep -E '\[(alert|crit|emerg|error)\]' "$tmp/error.log" | head -n 10 >&2
    failures=$((failures + 1))
fi

# ---- the table: medians over rounds, ratios to lua-resty-mysql within a round
{
    echo "# OpenResty load test (bench/ngx.sh)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), 2 workers, a cap of $cap MariaDB connections per worker for every system (scoped pool_size $cap max_overflow 0; lua-resty-mysql pool_size $cap with backlog, which it exceeds: see the peak column), scoped non-blocking also with pool_size $wide, and with pool_size $cap max_overflow -1 (lua-resty-mysql's rule in practice), wrk -t2 -c$conc, ${secs} s per cell after ${warm} s of warm-up, $rounds round(s), median; load average $load0 before; commit $(git rev-parse --short HEAD 2>/dev/null)${nb_note:+; $nb_note}; error.log after a graceful quit: $alerts alert, $errlines error lines"
    echo
    echo "| workload | system | req/s | p50 ms | p99 ms | errors | peak connections (2 workers) | req/s vs lua-resty-mysql |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'\t' -v wide="$wide" -v cap="$cap" '
        { key = $2 SUBSEP $3; n[key]++; rps[key, n[key]] = $4; p50[key, n[key]] = $5; p99[key, n[key]] = $6; err[key] += $7
          if ($8 + 0 > peak[key]) peak[key] = $8 + 0
          round[$1, $2, $3] = $4 }
        function median(a, key, cnt,   i, j, t, v) {
            for (i = 1; i <= cnt; i++) v[i] = a[key, i]
            for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
            return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2 }
        END {
            split("sleep unit", ws, " "); ns = split("inline offload nb nbwide nbover bell resty", ss, " ")
            name["inline"] = "scoped inline (blocking)"; name["offload"] = "scoped offload (thread pool)"
            name["nb"] = "scoped non-blocking (io_wait)"; name["resty"] = "lua-resty-mysql 0.29"
            name["bell"] = "scoped, design (b): helper thread + doorbell"
            name["nbwide"] = "scoped non-blocking, pool_size " wide
            name["nbover"] = "scoped non-blocking, pool_size " cap ", max_overflow -1"
            wl["sleep"] = "SELECT SLEEP(0.02)"; wl["unit"] = "INSERT + SELECT + COMMIT"
            for (a = 1; a <= 2; a++) for (b = 1; b <= ns; b++) {
                w = ws[a]; s = ss[b]; key = w SUBSEP s; cnt = n[key]
                if (!cnt) continue
                # the ratio per round, then its median
                m = 0; delete rr
                for (r = 1; r <= cnt; r++) if (round[r, w, "resty"] > 0) rr[++m] = round[r, w, s] / round[r, w, "resty"]
                for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (rr[j] < rr[i]) { t = rr[i]; rr[i] = rr[j]; rr[j] = t }
                ratio = m ? (m % 2 ? rr[(m + 1) / 2] : (rr[m / 2] + rr[m / 2 + 1]) / 2) : 0
                printf "| %s | %s | %.0f | %.1f | %.1f | %d | %d | %s |\n", wl[w], name[s], median(rps, key, cnt),
                    median(p50, key, cnt), median(p99, key, cnt), err[key], peak[key], s == "resty" ? "1.00x" : sprintf("%.2fx", ratio)
            }
        }' "$TSV"
    echo
    echo "Targets (issue 19): SELECT SLEEP(0.02) non-blocking >= 1.0x lua-resty-mysql's req/s; INSERT + SELECT + COMMIT non-blocking >= 1.0x with a lower p99; zero errors; no alert in error.log."
} >"$OUT"
cat "$OUT"
say "${elapsed}s of measuring; table in $OUT, raw figures in $TSV"
[ "$failures" -gt 0 ] && { say "$failures failure(s)"; exit 1; }
exit 0
