#!/usr/bin/env bash
# extra-server.sh start DIR OWNER_PID [MARIADBD_OPTION...] | stop DIR
#
# A second throwaway MariaDB with server options of the spec's choosing (e.g.
# spec/injection_spec.lua: --character-set-server=gbk
# --skip-character-set-client-handshake, a server that ignores the client's
# charset).
#
#   start DIR  makes a fresh datadir in DIR (which must exist and be empty) and
#              starts mariadbd on a free 127.0.0.1 port and DIR/mysqld.sock with
#              the options given; root has no password. Prints "PORT PID" once
#              the server answers. A watchdog stops the server if OWNER_PID (the
#              spec's Lua process) goes away without calling stop.
#   stop DIR   stops that server (TERM, then KILL after 10 s) and removes DIR.
set -uo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] && [ -d "$dir" ] ||
    { echo "usage: $0 start DIR OWNER_PID [OPTION...] | stop DIR" >&2; exit 2; }

alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$s" != Z ]; }

stop_pid() {
    local pid=$1 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
}

if [ "$cmd" = stop ]; then
    [ -f "$dir/watchdog.pid" ] && kill "$(cat "$dir/watchdog.pid")" 2>/dev/null
    [ -f "$dir/mysqld.pid" ] && stop_pid "$(cat "$dir/mysqld.pid")"
    [ -f "$dir/server.pid" ] && stop_pid "$(cat "$dir/server.pid")"
    rm -rf -- "$dir"
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
owner=${3:-$PPID}
shift 3 2>/dev/null || shift $#
extra=("$@")

. "$(dirname "${BASH_SOURCE[0]}")/free-port.sh"
cd "$dir" || exit 1
common=(--innodb-buffer-pool-size=16M --innodb-log-file-size=8M)
if ! mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve "${common[@]}" >install.log 2>&1; then
    echo "extra-server: mariadb-install-db failed:" >&2
    cat install.log >&2
    exit 1
fi
user=()
[ "$(id -u)" = 0 ] && user=(--user=root)
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
for _ in 1 2 3 4 5; do
    port=$(free_port) || exit 1
    rm -f mysqld.pid
    "$mariadbd" --no-defaults "${user[@]}" --datadir="$dir/data" --socket="$dir/mysqld.sock" \
        --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/mysqld.pid" --log-error="$dir/mysqld.err" \
        --tmpdir="$dir" --skip-name-resolve --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
        --loose-innodb-use-native-aio=0 --loose-feedback=OFF "${common[@]}" "${extra[@]}" \
        </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >server.pid
    ready=0
    for ((i = 0; i < 300; i++)); do
        if mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot --connect-timeout=2 ping \
                >/dev/null 2>&1; then
            ready=1
            break
        fi
        alive "$pid" || break
        sleep 0.1
    done
    [ "$ready" = 1 ] && break
    alive "$pid" || continue   # most likely lost a race for the port
    break
done
if [ "$ready" != 1 ]; then
    echo "extra-server: mariadbd did not start:" >&2
    tail -n 30 mysqld.err >&2
    stop_pid "$pid"
    exit 1
fi
if ! mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot \
        -e 'CREATE DATABASE scoped_test' >/dev/null 2>&1; then
    echo "extra-server: CREATE DATABASE failed" >&2
    stop_pid "$pid"
    exit 1
fi
# the watchdog: our starter gone means nobody will call stop
(
    trap '' HUP
    while alive "$owner" && alive "$pid"; do sleep 1; done
    stop_pid "$pid"
) </dev/null >/dev/null 2>&1 &
echo $! >watchdog.pid
echo "$port $pid"
