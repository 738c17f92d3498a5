#!/usr/bin/env bash
# run-ha.sh — what `make test-scaleout` (alias test-ha) runs: the several-hosts specs (spec/ha/*_ha.lua,
# issue 21) under lua5.4 and luajit. Each file starts the topologies it needs
# itself (spec/support/topology.sh: a primary + GTID replica, a 3-node
# Galera cluster), so no with-db.sh server is involved. Same counting and
# last line as run-tests.sh.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh

BUSTED=${BUSTED:-/usr/bin/busted}
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4

TAP_TIMEOUT=${SCOPED_HA_TIMEOUT:-600}
for lua in lua5.4 luajit; do
    tap_run "$lua busted (several hosts)" env \
        LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
        LUA_CPATH="./build/$lua/?.so;;" \
        SCOPED_LUA="$lua" \
        "$lua" "$BUSTED" -o TAP -p '_ha' spec/ha
done
tap_finish
