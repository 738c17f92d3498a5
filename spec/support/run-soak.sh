#!/usr/bin/env bash
# run-soak.sh — what `make soak` runs inside with-db.sh: the long variants
# (SCOPED_SOAK=1) of the fault and leak specs under lua5.4 and luajit: 50
# coroutines, 60 transactions each, a dozen server restarts per workload,
# 100k checkout/checkin and 10k session cycles; then the state model
# (spec/state_model_spec.lua) with SCOPED_SOAK=1: 20 seeds x 4000 steps for
# each of its 14 engine variants, about 40 minutes per runtime, in a runner
# of its own (SCOPED_STATE_TIMEOUT seconds each, default 7200); then the
# several-hosts specs of `make test-scaleout` (spec/ha/, which start their own
# topologies: run-ha.sh's runners). Same counting and last line as run-tests.sh.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh

BUSTED=${BUSTED:-/usr/bin/busted}
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4

TAP_TIMEOUT=${SCOPED_TEST_TIMEOUT:-3600}
for lua in lua5.4 luajit; do
    tap_run "$lua busted (soak)" env \
        LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
        LUA_CPATH="./build/$lua/?.so;;" \
        SCOPED_LUA="$lua" SCOPED_SOAK=1 \
        "$lua" "$BUSTED" -o TAP spec/fault_spec.lua spec/leak_spec.lua spec/leak_threshold_spec.lua
done

TAP_TIMEOUT=${SCOPED_STATE_TIMEOUT:-7200}
for lua in lua5.4 luajit; do
    tap_run "$lua busted (state model soak)" env \
        LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
        LUA_CPATH="./build/$lua/?.so;;" \
        SCOPED_LUA="$lua" SCOPED_SOAK=1 \
        "$lua" "$BUSTED" -o TAP spec/state_model_spec.lua
done

TAP_TIMEOUT=${SCOPED_HA_TIMEOUT:-600}
for lua in lua5.4 luajit; do
    tap_run "$lua busted (several hosts)" env \
        LUA_PATH="./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;" \
        LUA_CPATH="./build/$lua/?.so;;" \
        SCOPED_LUA="$lua" \
        "$lua" "$BUSTED" -o TAP -p '_ha' spec/ha
done
tap_finish
