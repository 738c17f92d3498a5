#!/usr/bin/env bash
# bench/profile.sh [WORKLOAD...] — instruction counts per operation of
# scoped's hot paths under valgrind --tool=callgrind (stable where the
# timings of bench/run.sh are noisy), next to raw C's for the same workload.
#
#   bash bench/profile.sh                 # w1 w2 w2s w2s_core w2s_session w3 w3stream w3floor w4one w4batch
#                                         # w2_cqueues w2_luv w2s_cqueues w2s_luv
#   PROFILE_LUA=/path/to/lua bash bench/profile.sh w3
#   bash bench/profile.sh w3floor         # W3's Lua-side floor (bench/w3_floor.c)
#   bash bench/profile.sh w3 w3stream     # W3 buffered and streamed, with LuaSQL beside scoped
#                                         # (a fresh table per row; its reuse idiom) and raw C's W3
#   bash bench/profile.sh w2 w2_cqueues w2_luv   # W2 blocking and with io_wait (also
#                                         # w2s_cqueues4, w2s_luv4: 4 coroutines, pool 4)
#   bash bench/profile.sh w2wait w2wait_cqueues w2wait_luv   # W2 with a 1 ms statement:
#                                         # exactly one wait per statement, blocking or io_wait
#   bash bench/profile.sh iowait_cqueues iowait_luv   # one io_wait alone (no statement)
#
# Each workload runs twice per runtime with two sizes and no warm-up
# (BENCH_NOWARM=1); bench/cgdiff.lua subtracts the runs, so start-up,
# loading and connecting cancel out, and prints Ir per operation, the top
# functions by self cost and scoped's C functions (csrc/) by inclusive cost.
# Debian's lua5.4 binary has no symbols: the interpreter shows as ???. A Lua
# 5.4.4 built from source with -g (PROFILE_LUA) names them (luaV_execute,
# luaH_newkey, ...). LuaJIT's traces show as ??? whatever you do.
# BENCH_PAD=n moves the heap's layout (bench/scoped_bench.lua): on Lua 5.4
# a statement's count moves by up to 2,500 with it; to compare two builds,
# profile both at a few pads (0 500 1500 3000) and compare pad by pad.
# Output: stdout and bench/results/profile-latest.txt. Run `make bench` (or
# its build steps) first: this uses build/ as it is.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

if [ -z "${SCOPED_TEST_SOCKET:-}" ]; then
    exec bash spec/support/with-db.sh bash bench/profile.sh "$@"
fi
SOCK=$SCOPED_TEST_SOCKET
command -v valgrind >/dev/null || { echo "profile.sh: valgrind missing (bash spec/support/deps.sh valgrind)" >&2; exit 1; }
for f in build/bench/raw build/lua5.4/scoped/core.so build/luajit/scoped/core.so build/bench/lua5.4/benchclock.so; do
    [ -e "$f" ] || { echo "profile.sh: $f missing: run make bench first" >&2; exit 1; }
done
mariadb --no-defaults --socket="$SOCK" -uroot scoped_test <bench/setup.sql || exit 1
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
PLUA=${PROFILE_LUA:-lua5.4}

workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(w1 w2 w2s w2s_core w2s_session w3 w3stream w3floor w4one w4batch
    w2_cqueues w2_luv w2s_cqueues w2s_luv)

# small and big n, and how many operations their difference is (W3: per row)
declare -A SMALL=([w1]=2000 [w2]=1000 [w2s]=1000 [w2s_core]=1000 [w2s_session]=1000 [w3]=1 [w3stream]=1 [w3floor]=1 [w4one]=1000 [w4batch]=2000)
declare -A BIG=([w1]=12000 [w2]=3000 [w2s]=4000 [w2s_core]=4000 [w2s_session]=4000 [w3]=3 [w3stream]=3 [w3floor]=3 [w4one]=3000 [w4batch]=12000)
declare -A UNIT=([w1]="checkout+checkin" [w2]="statement" [w2s]="request" [w2s_core]="request" [w2s_session]="request" [w3]="row" [w3stream]="row" [w3floor]="row" [w4one]="row" [w4batch]="row")
# W2 and W2s with io_wait (bench/scoped_bench.lua): the sizes of their base
# workload; raw C's figure is under w2 and w2s
SMALL[w2wait]=300 BIG[w2wait]=900 UNIT[w2wait]="statement"
SMALL[iowait_cqueues]=300 BIG[iowait_cqueues]=900 UNIT[iowait_cqueues]="wait (the adapter and the loop alone)"
SMALL[iowait_luv]=300 BIG[iowait_luv]=900 UNIT[iowait_luv]="wait (the adapter and the loop alone)"
for v in w2_cqueues w2_luv w2s_cqueues w2s_luv w2s_cqueues4 w2s_luv4 w2wait_cqueues w2wait_luv; do
    base=${v%%_*}
    SMALL[$v]=${SMALL[$base]} BIG[$v]=${BIG[$base]} UNIT[$v]="${UNIT[$base]}"
done

# w3floor: W3's rows built straight from memory by the Lua C API calls scoped
# makes (no libmariadb, no parsing), every cell touched the same way: what
# any binding pays on each Lua to hand 100,000 such rows to Lua code (built
# here, only when asked for: nothing else uses it)
if [[ " ${workloads[*]} " == *" w3floor "* ]]; then
    for l in lua5.4 luajit; do
        mkdir -p "build/bench/$l"
        cc -O2 -g -Wall -Wextra -Werror -fPIC -shared $(pkg-config --cflags "$l") \
            -o "build/bench/$l/w3floor.so" bench/w3_floor.c || exit 1
    done
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-prof.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
OUT=bench/results/profile-latest.txt
mkdir -p bench/results
# before the output file is emptied: that alone would make the tree "dirty"
CODE=$(git describe --always --dirty 2>/dev/null)
: >"$OUT"

cg() {   # name n cmd...
    local name=$1 n=$2
    shift 2
    BENCH_NOWARM=1 valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.$n" "$@" >"$tmp/$name.$n.out" 2>"$tmp/$name.$n.log" \
        || { echo "profile.sh: $name failed:"; cat "$tmp/$name.$n.log"; return 1; } >&2
}

{
    echo "# callgrind, Ir per operation ($(date -u '+%Y-%m-%d %H:%M UTC'), code $CODE)"
    echo "# Lua 5.4 binary: $PLUA${BENCH_PAD:+; BENCH_PAD=$BENCH_PAD (bench/scoped_bench.lua)}"
} | tee -a "$OUT"
for w in "${workloads[@]}"; do
    s=${SMALL[$w]:-}
    b=${BIG[$w]:-}
    [ -z "$s" ] && { echo "profile.sh: no sizes for $w" >&2; continue; }
    d=$((b - s))
    case $w in w3|w3stream|w3floor) d=$((d * 100000)) ;; esac
    # LuaSQL beside scoped for W3 (a fresh table per row) and W3 streamed
    # (its manual's idiom: one row table refilled, cur:fetch(row, "n"))
    for sys in raw lua5.4 luajit luasql-5.4 luasql-jit; do
        [ "$sys" = raw ] && case $w in w1|w3floor|w2s_core|w2s_session|w2_*|w2s_*|w2wait*|iowait_*) true ;; *) false ;; esac && continue
        case $sys in luasql-*) case $w in w3|w3stream) ;; *) continue ;; esac ;; esac
        script=bench/scoped_bench.lua; args=("$SOCK" "$w")
        [ "$w" = w3floor ] && { script=bench/w3_floor.lua; args=(); }
        case $sys in luasql-*) script=bench/luasql_bench.lua ;; esac
        rw=$w; [ "$w" = w3stream ] && rw=w3   # raw C's W3 is the yardstick of both
        name="$w-$sys"
        for n in "$s" "$b"; do
            case $sys in
                raw) cg "$name" "$n" build/bench/raw "$SOCK" "$rw" "$n" || continue 2 ;;
                lua5.4|luajit|luasql-5.4|luasql-jit)
                    bin=$PLUA; case $sys in luajit|luasql-jit) bin=luajit ;; esac
                    lsys=lua5.4; [ "$bin" = luajit ] && lsys=luajit
                    # exported, not through env(1): valgrind must start lua itself
                    (export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/bench/?.lua;;" \
                        LUA_CPATH="$ROOT/build/$lsys/?.so;$ROOT/build/bench/$lsys/?.so;;" \
                        MYSQL_UNIX_PORT="$SOCK"
                     cg "$name" "$n" "$bin" "$script" "${args[@]}" "$n") || continue 2 ;;
            esac
        done
        {
            echo
            what="scoped, $sys"; [ "$sys" = raw ] && what="raw C"; [ "$w" = w3floor ] && what="the Lua C API alone, $sys"
            case $sys in luasql-*) what="LuaSQL ($([ "$w" = w3 ] && echo "a fresh table per row" || echo 'reuse idiom, cur:fetch(row, "n")')), ${sys#luasql-}" ;; esac
            [ "$sys" = raw ] && [ "$w" = w3stream ] && what="raw C (its W3)"
            echo "## $w on $what: per ${UNIT[$w]}"
            top=12; [ "$sys" = raw ] && top=6
            lua5.4 bench/cgdiff.lua "$tmp/$name.$s" "$tmp/$name.$b" "$d" "$top"
            # the io_wait variants count their waits (one poll of the socket
            # each): how many of the operations' instructions went to waiting
            if grep -q '^EXTRA io_waits ' "$tmp/$name.$b.out"; then
                awk -v d="$d" '$1 == "EXTRA" && $2 == "io_waits" { w[FILENAME] = $3; f[++k] = FILENAME }
                    END { printf "io_wait calls per operation: %.3f\n", (w[f[2]] - w[f[1]]) / d }' \
                    "$tmp/$name.$s.out" "$tmp/$name.$b.out"
            fi
        } | tee -a "$OUT"
    done
done
echo "profile.sh: written to $OUT" >&2
