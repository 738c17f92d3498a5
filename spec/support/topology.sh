#!/usr/bin/env bash
# topology.sh start replication|galera DIR OWNER_PID | stop DIR
#
# Throwaway multi-server topologies on loopback ports, for the several-hosts
# specs (issue 21; spec/hosts_spec.lua):
#
#   replication  a primary (binlog, GTID) and one replica (read_only=ON,
#                replicating with MASTER_USE_GTID=slave_pos): nodes "primary"
#                and "replica"
#   galera       a 3-node Galera cluster (galera-4, gcomm:// on 127.0.0.1,
#                rsync SST): nodes "node1", "node2", "node3"
#
#   start  DIR must exist and be empty. Makes one datadir per node in DIR/NAME,
#          starts the servers and waits until the topology works (the replica
#          has replicated; every Galera node is Synced with wsrep_ready=ON).
#          Prints one line per node, "node NAME PORT PID", then
#          "ready MILLISECONDS". A watchdog stops everything if OWNER_PID (the
#          spec's Lua process) goes away without calling stop.
#   stop   kills every node (SIGKILL: the data is thrown away, and a Galera
#          node's clean shutdown takes seconds) and removes DIR.
#
# Each node's DIR/NAME holds mysqld.sock, mysqld.pid, mysqld.err and
# restart.sh: the command that starts that node again on the same port and
# datadir (a Galera node rejoins the others). Databases: scoped_test on every
# node; users: root@localhost (socket, no password) and
# scoped@127.0.0.1 / password "scoped" with ALL on scoped_test.* only, so that
# read_only applies to it (root ignores read_only).
#
# Galera runs its servers as the mysql user (rsync SST fails as root) and
# needs galera-4 and rsync (bash spec/support/deps.sh galera-4 rsync).
# Never listens on anything but 127.0.0.1.
set -uo pipefail
# the servers are no part of what is tested: never under the spec's ASan
# or valgrind preload (run-asan.sh), which broke Galera's SST
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS

cmd=${1:-}
say() { echo "topology: $*" >&2; }
alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$s" != Z ]; }

stop_pid() {
    local pid=$1 i
    alive "$pid" || return 0
    kill -KILL "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.05; done
}

ours() {   # PID NODE-DIR: a mariadbd on that node's datadir (a pid file may be stale)
    tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -qxF -- "--datadir=${2%/}/data"
}

stop_all() {   # DIR
    local d=$1 n pid f p
    for n in "$d"/*/; do
        for f in mysqld.pid server.pid; do
            [ -f "$n/$f" ] && pid=$(cat "$n/$f" 2>/dev/null) && [ -n "$pid" ] && ours "$pid" "$n" &&
                stop_pid "$pid"
        done
    done
    # what a server left behind: a Galera joiner killed during its SST
    # leaves wsrep_sst_rsync and its rsync daemon running; they name a path
    # inside DIR/ (this script's own command line names DIR only)
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] && continue
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "${d%/}/" && kill -KILL "$pid" 2>/dev/null
    done
}

if [ "$cmd" = stop ]; then
    dir=${2:-}
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    [ -f "$dir/watchdog.pid" ] && kill "$(cat "$dir/watchdog.pid")" 2>/dev/null
    stop_all "$dir"
    rm -rf -- "$dir"
    exit 0
fi

kind=${2:-}
dir=${3:-}
owner=${4:-$PPID}
if [ "$cmd" != start ] || [ -z "$dir" ] || [ ! -d "$dir" ] ||
        { [ "$kind" != replication ] && [ "$kind" != galera ]; }; then
    echo "usage: $0 start replication|galera DIR OWNER_PID | stop DIR" >&2
    exit 2
fi
dir=$(cd "$dir" && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/free-port.sh"
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
start_t=$(date +%s%N)

fail() {
    say "$*"
    local n
    for n in "$dir"/*/; do
        [ -f "$n/mysqld.err" ] && { echo "--- $n/mysqld.err" >&2; tail -n 25 "$n/mysqld.err" >&2; }
    done
    stop_all "$dir"
    exit 1
}

sql() {   # NODE SQL...: as root over the node's socket
    local n=$1
    shift
    mariadb --no-defaults --socket="$dir/$n/mysqld.sock" -uroot -N -B -e "$*"
}

common=(
    --no-defaults
    --innodb-buffer-pool-size=16M --innodb-log-file-size=8M
    --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0
    --loose-innodb-use-native-aio=0 --loose-feedback=OFF
    --skip-name-resolve --bind-address=127.0.0.1 --max-connections=200
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
    --lock-wait-timeout=60
)

# one datadir made by mariadb-install-db, copied for every node (faster than
# one install each)
user=root
[ "$kind" = galera ] && user=mysql
if [ "$(id -u)" != 0 ]; then user=$(id -un); fi
chmod 755 "$dir"
# its temporary tables in DIR, not in the shared /tmp (a run failed there
# with "Could not remove temporary table '/tmp/#sql-temptable-...'")
mkdir -p "$dir/install-tmp"
if ! mariadb-install-db --no-defaults --datadir="$dir/template" --auth-root-authentication-method=normal \
        --tmpdir="$dir/install-tmp" \
        --skip-test-db --skip-name-resolve --innodb-buffer-pool-size=16M --innodb-log-file-size=8M \
        >"$dir/install.log" 2>&1; then
    say "mariadb-install-db failed:"
    cat "$dir/install.log" >&2
    exit 1
fi

# NAME PORT EXTRA-OPTION...: writes DIR/NAME/restart.sh, starts it, and waits
# until the socket answers (Galera: until mariadbd is up, Synced or not)
start_node() {
    local n=$1 port=$2 i pid
    shift 2
    local d="$dir/$n"
    mkdir -p "$d"
    [ -d "$d/data" ] || cp -a "$dir/template" "$d/data"
    [ "$user" != root ] && [ "$(id -u)" = 0 ] && chown -R "$user" "$d"
    local args=("${common[@]}" --user="$user" --datadir="$d/data" --socket="$d/mysqld.sock"
        --port="$port" --pid-file="$d/mysqld.pid" --log-error="$d/mysqld.err" --tmpdir="$d" "$@")
    printf 'unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS\nexec %q' "$mariadbd" >"$d/restart.sh"
    local a
    for a in "${args[@]}"; do
        [ "$a" = --wsrep-new-cluster ] && continue
        printf ' %q' "$a" >>"$d/restart.sh"
    done
    echo ' </dev/null >/dev/null 2>&1' >>"$d/restart.sh"
    rm -f "$d/mysqld.pid"
    "$mariadbd" "${args[@]}" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$d/server.pid"
    for ((i = 0; i < 600; i++)); do   # 60 s
        if mariadb-admin --no-defaults --socket="$d/mysqld.sock" -uroot --connect-timeout=2 ping \
                >/dev/null 2>&1; then
            echo "$port" >"$d/port"
            return 0
        fi
        alive "$pid" || return 1
        sleep 0.05
    done
    return 1
}

app_users="CREATE DATABASE scoped_test CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER 'scoped'@'127.0.0.1' IDENTIFIED BY 'scoped';
GRANT ALL ON scoped_test.* TO 'scoped'@'127.0.0.1';"

if [ "$kind" = replication ]; then
    p1=$(free_port) && p2=$(free_port) || fail "no free port"
    start_node primary "$p1" --server-id=1 --log-bin="$dir/primary/binlog" --binlog-format=ROW \
        --gtid-strict-mode=ON || fail "the primary did not start"
    start_node replica "$p2" --server-id=2 --read-only=ON --gtid-strict-mode=ON --skip-log-bin \
        --relay-log="$dir/replica/relay" || fail "the replica did not start"
    sql primary "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
        GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'; $app_users" || fail "primary setup failed"
    sql replica "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$p1, MASTER_USER='repl',
        MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;" ||
        fail "CHANGE MASTER failed"
    gtid=$(sql primary "SELECT @@gtid_binlog_pos")
    [ "$(sql replica "SELECT MASTER_GTID_WAIT('$gtid', 30)")" = 0 ] || fail "the replica did not catch up"
    nodes=(primary replica)
else
    [ -f /usr/lib/galera/libgalera_smm.so ] || fail "no galera-4 (bash spec/support/deps.sh galera-4 rsync)"
    command -v rsync >/dev/null || fail "no rsync (bash spec/support/deps.sh galera-4 rsync)"
    nodes=(node1 node2 node3)
    declare -A port gport ist sst
    for n in "${nodes[@]}"; do
        port[$n]=$(free_port) && gport[$n]=$(free_port) && ist[$n]=$(free_port) && sst[$n]=$(free_port) ||
            fail "no free port"
    done
    peers=""
    for n in "${nodes[@]}"; do peers="$peers${peers:+,}127.0.0.1:${gport[$n]}"; done
    galera_node() {   # NAME [--wsrep-new-cluster]
        local n=$1
        shift
        start_node "$n" "${port[$n]}" --binlog-format=ROW --default-storage-engine=InnoDB \
            --innodb-autoinc-lock-mode=2 --wsrep-on=ON --wsrep-provider=/usr/lib/galera/libgalera_smm.so \
            --wsrep-cluster-name=scoped_test --wsrep-cluster-address="gcomm://$peers" \
            --wsrep-node-name="$n" --wsrep-node-address=127.0.0.1 \
            --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:${gport[$n]};ist.recv_addr=127.0.0.1:${ist[$n]};gcache.size=32M" \
            --wsrep-sst-method=rsync --wsrep-sst-receive-address="127.0.0.1:${sst[$n]}" "$@"
    }
    galera_node node1 --wsrep-new-cluster || fail "node1 did not start"
    sql node1 "$app_users" || fail "node1 setup failed"
    # the joiners one after the other: two SSTs from one donor at once
    # make one of them wait for the other anyway
    galera_node node2 || fail "node2 did not start"
    galera_node node3 || fail "node3 did not start"
    for n in "${nodes[@]}"; do
        for ((i = 0; i < 1200; i++)); do   # 60 s
            [ "$(sql "$n" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
                WHERE VARIABLE_NAME = 'wsrep_local_state_comment'" 2>/dev/null)" = Synced ] && break
            sleep 0.05
        done
        [ "$(sql "$n" "SHOW STATUS LIKE 'wsrep_cluster_size'" | awk '{print $2}')" = 3 ] ||
            fail "$n is not Synced in a 3-node cluster"
    done
fi

# the watchdog: our starter gone means nobody will call stop
(
    trap '' HUP
    while alive "$owner"; do sleep 1; done
    stop_all "$dir"
    rm -rf -- "$dir"
) </dev/null >/dev/null 2>&1 &
echo $! >"$dir/watchdog.pid"
for n in "${nodes[@]}"; do
    echo "node $n $(cat "$dir/$n/port") $(cat "$dir/$n/mysqld.pid")"
done
echo "ready $((($(date +%s%N) - start_t) / 1000000))"
