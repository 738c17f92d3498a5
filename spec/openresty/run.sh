#!/usr/bin/env bash
# run.sh — the OpenResty specs, in a real nginx (Debian's nginx 1.22 with
# libnginx-mod-http-lua, lua-resty-core, luajit2). Run by spec/support/run-tests.sh
# (inside with-db.sh, which provides SCOPED_TEST_URL); prints TAP.
#
# Two private nginx instances, one after the other, each on a free 127.0.0.1 port
# with everything it writes under a temp dir (pid, lock, logs, the five temp paths),
# in the foreground (daemon off) and always stopped by its pid:
#   single  1 worker: the functional checks (requests that must meet in one worker)
#   load    2 workers: 500 requests at concurrency 50
#   quit    2 workers: io_wait under load through a reload and a graceful quit
# The checks themselves are spec/openresty/checks.lua (curl + luajit).
# Needs build/luajit/scoped/core.so (make LUA=luajit).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
root=$PWD

NGINX=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
MODULES=/usr/lib/nginx/modules
user_line="# (not root: workers run as this user)"
[ "$(id -u)" = 0 ] && user_line="user root;"
phases=(${SCOPED_NGX_PHASES:-single load quit})   # SCOPED_NGX_PHASES="single" runs one
workers_single=1
workers_load=2
workers_quit=2

tmp=""
nginx_pid=""

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

stop_nginx() {
    local i
    [ -n "$nginx_pid" ] || return 0
    if alive "$nginx_pid"; then
        kill -TERM "$nginx_pid" 2>/dev/null   # fast shutdown: workers exit, sockets close
        for ((i = 0; i < 100; i++)); do alive "$nginx_pid" || break; sleep 0.1; done
        if alive "$nginx_pid"; then
            echo "# nginx $nginx_pid did not stop within 10 s; killing it"
            kill -KILL "$nginx_pid" 2>/dev/null
        fi
    fi
    { wait "$nginx_pid"; } 2>/dev/null
    nginx_pid=""
}

cleanup() {
    stop_nginx
    [ -n "$tmp" ] && [ -d "$tmp" ] && rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

. spec/support/free-port.sh

# start_nginx NAME WORKERS: sets port and prefix; 0 when /ping answers
start_nginx() {
    local name=$1 workers=$2 i
    prefix=$tmp/$name
    mkdir -p "$prefix"
    for ((i = 0; i < 5; i++)); do   # another port if someone took ours
        port=$(free_port) || return 1
        sed -e "s|@PREFIX@|$prefix|g" -e "s|@ROOT@|$root|g" -e "s|@PORT@|$port|g" \
            -e "s|@WORKERS@|$workers|g" -e "s|@PHASE@|$name|g" -e "s|@USER@|$user_line|g" \
            spec/openresty/nginx.conf.in >"$prefix/nginx.conf"
        : >"$prefix/error.log"
        # -e: errors before the config is read go to our log, not /var/log/nginx
        "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
            </dev/null >>"$prefix/stdout.log" 2>&1 &
        nginx_pid=$!
        for ((j = 0; j < 100; j++)); do
            if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/ping"; then return 0; fi
            alive "$nginx_pid" || break
            sleep 0.1
        done
        stop_nginx
        grep -q "Address already in use" "$prefix/error.log" "$prefix/stdout.log" 2>/dev/null || break
    done
    echo "# nginx ($name) did not start; its logs:"
    sed 's/^/#   /' "$prefix/error.log" "$prefix/stdout.log" 2>/dev/null | tail -n 30
    return 1
}

export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export LUA_CPATH="$root/build/luajit/?.so;;"

# the plan first: a run that stops early counts the missing checks as failed
total=0
declare -A count
for ph in "${phases[@]}"; do
    count[$ph]=$(luajit spec/openresty/checks.lua count "$ph") || count[$ph]=1
    total=$((total + count[$ph]))
done
echo "1..$total"

missing=""
[ -x "$NGINX" ] || missing+=" nginx"
for m in ndk_http_module.so ngx_http_lua_module.so; do [ -f "$MODULES/$m" ] || missing+=" $MODULES/$m"; done
command -v curl >/dev/null 2>&1 || missing+=" curl"
command -v luajit >/dev/null 2>&1 || missing+=" luajit"
[ -f build/luajit/scoped/core.so ] || missing+=" build/luajit/scoped/core.so (make LUA=luajit)"
[ -n "${SCOPED_TEST_URL:-}" ] || missing+=" SCOPED_TEST_URL (run me via spec/support/with-db.sh)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-ngx.XXXXXX") || exit 1
status=0
n=1
for ph in "${phases[@]}"; do
    w=workers_$ph
    if [ -n "$missing" ]; then
        reason="missing:$missing (bash spec/support/deps.sh nginx libnginx-mod-http-lua lua-resty-core curl)"
    elif ! start_nginx "$ph" "${!w}"; then
        reason="nginx did not start"
    else
        echo "# nginx ($ph, ${!w} worker(s)) pid $nginx_pid on 127.0.0.1:$port, prefix $prefix"
        luajit spec/openresty/checks.lua run "$ph" "$port" "$prefix" "$n" || status=1
        if [ "$status" != 0 ]; then
            echo "# nginx error.log ($ph), last lines:"
            tail -n 20 "$prefix/error.log" | sed 's/^/#   /'
        fi
        stop_nginx
        n=$((n + count[$ph]))
        continue
    fi
    for ((i = 0; i < count[$ph]; i++)); do echo "not ok $((n + i)) - $ph: $reason"; done
    n=$((n + count[$ph]))
    status=1
done
exit "$status"
