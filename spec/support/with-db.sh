#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable
# with-db.sh [--demo] CMD...
#
# Runs CMD with a MariaDB to talk to and exits with CMD's exit status.
#
#   * SCOPED_TEST_URL set (with --demo: SCOPED_DATABASE_URL): use that server,
#     start nothing, just run CMD.
#   * otherwise: start a throwaway MariaDB on a free loopback port, in a fresh
#     temp dir, owned by this script, and export for CMD
#       SCOPED_TEST_URL (--demo: SCOPED_DATABASE_URL) mysql://root@127.0.0.1:PORT/scoped_test
#       SCOPED_TEST_SOCKET          its unix socket
#       SCOPED_TEST_PORT            its TCP port (bound to 127.0.0.1 only)
#       SCOPED_TEST_DATADIR         the temp dir (data/, mysqld.sock, mysqld.pid, mysqld.err)
#       SCOPED_TEST_MARIADBD        the server binary
#       SCOPED_TEST_MARIADBD_ARGS   its exact arguments, shell-quoted: fault tests can
#                                   stop the server and restart it with
#                                   sh -c "exec $SCOPED_TEST_MARIADBD $SCOPED_TEST_MARIADBD_ARGS" &
#                                   (same pid file, so the cleanup here stops the new one too)
#     root has no password.  The server is always stopped (TERM, up to 10 s, then KILL)
#     and the temp dir removed, on success, failure, INT and TERM.
#
# Never uses a system server, never listens on anything but 127.0.0.1.
set -uo pipefail

prog=with-db
url_var=SCOPED_TEST_URL
if [ "${1:-}" = "--demo" ]; then
    url_var=SCOPED_DATABASE_URL
    shift
fi
if [ $# -eq 0 ]; then
    echo "usage: $0 [--demo] CMD..." >&2
    exit 2
fi

# ---- an existing server: nothing to start --------------------------------------
if [ -n "${!url_var:-}" ]; then
    export "${url_var?}"
    exec "$@"
fi

say() { echo "$prog: $*" >&2; }

for tool in mariadb-install-db mariadbd mariadb-admin mariadb; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        say "$tool not found (install mariadb-server: bash spec/support/deps.sh)"
        exit 1
    fi
done
MARIADBD=$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)

tmp=""
server_pid=""
child_pid=""
cleaned=0

# ---- helpers ---------------------------------------------------------------------
alive() {   # pid alive and not a zombie
    local pid=$1 state
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 0
    [ "$state" != Z ]
}

is_our_server() {   # pid is a mariadbd running on our datadir
    local pid=$1
    alive "$pid" || return 1
    [ -r "/proc/$pid/cmdline" ] || return 0
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "--datadir=$tmp/data"
}

stop_pid() {   # TERM, wait up to 10 s, then KILL
    local pid=$1 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        say "mariadbd $pid did not stop within 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
    # reap it if it is our child (no "Killed" job notice on the terminal)
    { wait "$pid"; } 2>/dev/null
    return 0
}

stop_server() {
    local pid
    if [ -n "$tmp" ] && [ -f "$tmp/mysqld.pid" ]; then
        # a fault test may have restarted the server: that one wrote the pid file
        pid=$(cat "$tmp/mysqld.pid" 2>/dev/null)
        if [ -n "$pid" ] && [ "$pid" != "$server_pid" ] && is_our_server "$pid"; then
            stop_pid "$pid"
        fi
    fi
    if [ -n "$server_pid" ]; then
        stop_pid "$server_pid"
        server_pid=""
    fi
}

cleanup() {
    [ "$cleaned" = 1 ] && return
    cleaned=1
    if [ -n "$child_pid" ] && alive "$child_pid"; then
        stop_child TERM
    fi
    stop_server
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        rm -rf -- "$tmp"
    fi
}

stop_child() {   # signal CMD's whole process group, give it 10 s, then KILL it
    local sig=$1 i
    kill "-$sig" -- "-$child_pid" 2>/dev/null || kill "-$sig" "$child_pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        alive "$child_pid" || break
        sleep 0.1
    done
    if alive "$child_pid"; then
        kill -KILL -- "-$child_pid" 2>/dev/null || kill -KILL "$child_pid" 2>/dev/null
    fi
    { wait "$child_pid"; } 2>/dev/null
    # anything else left in CMD's process group (e.g. a restarted server) is killed too
    kill -KILL -- "-$child_pid" 2>/dev/null
    child_pid=""
}

on_signal() {
    local sig=$1 code=$2
    trap '' INT TERM
    # The terminal's Ctrl-C does not reach CMD (own process group, see below); pass
    # it on as TERM: lua's SIGINT handler only raises a Lua error, which busted
    # would report as one failed test and carry on.
    if [ -n "$child_pid" ] && alive "$child_pid"; then
        say "caught SIG$sig, stopping the tests"
        stop_child TERM
    fi
    exit "$code"
}

trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

. "$(dirname "${BASH_SOURCE[0]}")/free-port.sh"

# ---- a throwaway server ----------------------------------------------------------
base=${TMPDIR:-/tmp}
# a unix socket path must fit in 108 bytes
if [ ${#base} -gt 60 ] || [ ! -d "$base" ] || [ ! -w "$base" ]; then base=/tmp; fi
tmp=$(mktemp -d "$base/scoped-db.XXXXXX") || { say "mktemp failed"; exit 1; }
chmod 755 "$tmp"

common_args=(
    --innodb-buffer-pool-size=64M
    --innodb-log-file-size=8M
    --character-set-server=utf8mb4
    --collation-server=utf8mb4_general_ci
)
if ! mariadb-install-db --no-defaults --datadir="$tmp/data" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
        "${common_args[@]}" >"$tmp/install.log" 2>&1; then
    say "mariadb-install-db failed:"
    cat "$tmp/install.log" >&2
    exit 1
fi

user_args=()
if [ "$(id -u)" = 0 ]; then user_args=(--user=root); fi

start_t=$(date +%s%N)
ready=0
for _ in 1 2 3 4 5; do   # a new port if another process took ours
    port=$(free_port) || { say "no free loopback port found"; exit 1; }
    args=(
        --no-defaults "${user_args[@]}"
        --datadir="$tmp/data"
        --socket="$tmp/mysqld.sock"
        --port="$port"
        --bind-address=127.0.0.1
        --pid-file="$tmp/mysqld.pid"
        --log-error="$tmp/mysqld.err"
        --tmpdir="$tmp"
        --skip-name-resolve
        --max-connections=500
        --skip-log-bin
        "${common_args[@]}"
        # throwaway data: no doublewrite, flush the redo log to the OS (not the disk)
        # at commit — a killed mariadbd still loses nothing, only an OS crash would
        --innodb-flush-log-at-trx-commit=2
        --innodb-doublewrite=0
        # io_uring / libaio are often unavailable in containers; not worth it here
        --loose-innodb-use-native-aio=0
        # a metadata lock wait (DROP/ALTER behind a leaked open transaction) fails
        # after 60 s instead of the default one day, so a stuck spec cannot hang CI
        --lock-wait-timeout=60
        --loose-feedback=OFF
    )
    : >"$tmp/mysqld.err"
    rm -f "$tmp/mysqld.pid"
    # own process group: the terminal's Ctrl-C goes to us, we stop it in order
    set -m
    "$MARIADBD" "${args[@]}" </dev/null >/dev/null 2>>"$tmp/mysqld.err" &
    server_pid=$!
    set +m
    for ((i = 0; i < 300; i++)); do   # 30 s
        if mariadb-admin --no-defaults --socket="$tmp/mysqld.sock" -uroot \
                --connect-timeout=2 ping >/dev/null 2>&1; then
            ready=1
            break
        fi
        alive "$server_pid" || break
        sleep 0.1
    done
    [ "$ready" = 1 ] && break
    if ! alive "$server_pid" && grep -qE 'Address already in use|Bind on TCP/IP port' "$tmp/mysqld.err"; then
        { wait "$server_pid"; } 2>/dev/null
        server_pid=""
        continue   # lost a race for the port: try another one
    fi
    break
done
if [ "$ready" != 1 ]; then
    if alive "$server_pid"; then
        say "mariadbd did not answer within 30 s; its error log:"
    else
        say "mariadbd exited during startup; its error log:"
    fi
    cat "$tmp/mysqld.err" >&2
    exit 1
fi
ready_ms=$((($(date +%s%N) - start_t) / 1000000))

if ! out=$(mariadb --no-defaults --socket="$tmp/mysqld.sock" -uroot -e \
        'CREATE DATABASE scoped_test CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci' 2>&1); then
    say "creating database scoped_test failed: $out"
    exit 1
fi
# root over TCP, as the URL says
if ! out=$(mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot scoped_test \
        -e 'SELECT 1' 2>&1); then
    say "root@127.0.0.1:$port cannot connect: $out"
    exit 1
fi

url="mysql://root@127.0.0.1:$port/scoped_test"
export "$url_var=$url"
export SCOPED_TEST_SOCKET="$tmp/mysqld.sock"
export SCOPED_TEST_PORT="$port"
export SCOPED_TEST_DATADIR="$tmp"
export SCOPED_TEST_MARIADBD="$MARIADBD"
SCOPED_TEST_MARIADBD_ARGS=$(printf '%q ' "${args[@]}")
export SCOPED_TEST_MARIADBD_ARGS="${SCOPED_TEST_MARIADBD_ARGS% }"

say "throwaway MariaDB $(mariadbd --version 2>/dev/null | awk '{print $3}') on 127.0.0.1:$port, ready in ${ready_ms} ms ($tmp)"

# CMD in its own process group so that on INT/TERM we can stop all of it; stdin kept.
set -m
"$@" <&0 &
child_pid=$!
set +m
wait "$child_pid"
rc=$?
child_pid=""
exit "$rc"
