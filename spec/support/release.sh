#!/usr/bin/env bash
# release.sh dist   — scoped-V.tar.gz (git archive of HEAD, prefix scoped-V/) and
#                     scoped-V-1.src.rock (luarocks pack of rockspec/scoped-V-1.rockspec),
#                     both in the top directory; V is lua/scoped/init.lua's _VERSION
# release.sh check  — TAP: in a clean clone, `luarocks pack` of the versioned
#                     rockspec by hand fails for the README's reason, and make dist
#                     and `luarocks build` of it work; then installs the .src.rock
#                     offline into private trees, on Lua 5.4 and on Lua 5.1 built
#                     against LuaJIT's headers, and requires "scoped" from each
#                     (make test-release, a CI stage)
#
# Why pack goes through a copy of the rockspec: the versioned rockspec names
# its source "scoped-V.tar.gz", a path with no scheme, which is what a
# .src.rock needs (luarocks unpacks source.file from the rock itself, with
# no network), but `luarocks pack` fetches that path from inside a
# temporary directory of its own, where it is not. So pack reads a copy
# whose url is the tarball's absolute file:// path, and the rock gets the
# committed rockspec back afterwards: the shipped rock never carries a path
# of the machine that built it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

V=$(sed -n 's/^ *_VERSION = "\([^"]*\)".*/\1/p' lua/scoped/init.lua)
[ -n "$V" ] || { echo "release.sh: no _VERSION in lua/scoped/init.lua" >&2; exit 1; }
NAME=scoped-$V
ROCKSPEC=rockspec/$NAME-1.rockspec
TOP=$PWD

dist() {
    [ -f "$ROCKSPEC" ] || { echo "release.sh: $ROCKSPEC is missing (one per release)" >&2; exit 1; }
    if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
        echo "# NOTE: uncommitted changes are not in $NAME.tar.gz (git archive of HEAD)"
    fi
    git archive --format=tar.gz --prefix="$NAME/" -o "$NAME.tar.gz" HEAD
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-pack.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf -- '$tmp'" RETURN
    sed "s|^  url = \"$NAME.tar.gz\",|  url = \"file://$TOP/$NAME.tar.gz\",|" "$ROCKSPEC" >"$tmp/$NAME-1.rockspec"
    grep -q "file://" "$tmp/$NAME-1.rockspec" ||
        { echo "release.sh: $ROCKSPEC has no url = \"$NAME.tar.gz\"" >&2; exit 1; }
    rm -f "$NAME-1.src.rock"
    (cd "$tmp" && luarocks pack "$NAME-1.rockspec" >/dev/null)
    mv "$tmp/$NAME-1.src.rock" .
    mkdir "$tmp/rs" && cp "$ROCKSPEC" "$tmp/rs/"
    (cd "$tmp/rs" && zip -q "$TOP/$NAME-1.src.rock" "$NAME-1.rockspec")
    echo "$NAME.tar.gz $NAME-1.src.rock"
}

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }

# install LUAVERSION LUA [luarocks options...]
install_and_require() {
    local lv=$1 lua=$2 tree log t0
    shift 2
    tree=$(mktemp -d "${TMPDIR:-/tmp}/scoped-tree.XXXXXX")
    log=$tree.log
    t0=$(date +%s)
    # no rocks server at all: the install must need nothing but the rock
    if luarocks --lua-version "$lv" --only-server=/nonexistent install --tree "$tree" \
        "./$NAME-1.src.rock" "$@" >"$log" 2>&1; then
        ok "luarocks --lua-version $lv install ./$NAME-1.src.rock into a private tree ($(($(date +%s) - t0)) s)"
    else
        sed 's/^/# /' "$log"
        not_ok "luarocks --lua-version $lv install ./$NAME-1.src.rock into a private tree"
        rm -rf -- "$tree" "$log"
        return
    fi
    # from another directory, with only the tree on the paths
    local out
    if out=$(cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 \
        LUA_PATH="$tree/share/lua/$lv/?.lua;$tree/share/lua/$lv/?/init.lua" \
        LUA_CPATH="$tree/lib/lua/$lv/?.so" WANT_VERSION="$V" TREE="$tree" \
        "$lua" -e '
            local scoped = require "scoped"
            assert(scoped._VERSION == os.getenv("WANT_VERSION"), "version " .. tostring(scoped._VERSION))
            local where = package.searchpath("scoped.core", package.cpath)
            assert(where and where:find(os.getenv("TREE"), 1, true) == 1, "core from " .. tostring(where))
            -- create_engine opens nothing: this runs without a server
            local e = scoped.create_engine("mysql://u:p@127.0.0.1:1/db", {pool_size = 2})
            assert(e.pool:size() == 2)
            print(scoped._VERSION .. " from " .. where)
        ' 2>&1); then
        ok "$lua: require \"scoped\" from the tree: $out"
    else
        echo "$out" | sed 's/^/# /'
        not_ok "$lua: require \"scoped\" from the tree"
    fi
    rm -rf -- "$tree" "$log"
}

# By hand, from a clean checkout (README "Install", "Packing by hand"):
# `luarocks pack rockspec/scoped-V-1.rockspec` fails there, and must fail
# for the reason the README gives (luarocks 3.8 fetches the relative
# source url from a temporary directory of its own); what the README says
# to run instead works in that same checkout: make dist, and luarocks
# build of the rockspec next to the tarball.
by_hand() {
    local tmp log
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/scoped-clone.XXXXXX")
    log=$tmp/log
    if ! git clone -q "$TOP" "$tmp/scoped" >"$log" 2>&1; then
        sed 's/^/# /' "$log"
        not_ok "git clone of this checkout"
        rm -rf -- "$tmp"
        return
    fi
    if (cd "$tmp/scoped" && luarocks pack "$ROCKSPEC") >"$log" 2>&1; then
        not_ok "luarocks pack $ROCKSPEC by hand in a clean clone fails as the README says (it worked:" \
            "update the README's \"Packing by hand\")"
    elif grep -q "note that given path in rockspec is not absolute: $NAME.tar.gz" "$log"; then
        ok "luarocks pack $ROCKSPEC by hand in a clean clone fails as the README says (relative source url)"
    else
        sed 's/^/# /' "$log"
        not_ok "luarocks pack $ROCKSPEC by hand in a clean clone fails as the README says (another error)"
    fi
    if (cd "$tmp/scoped" && make --no-print-directory dist) >"$log" 2>&1 &&
        unzip -p "$tmp/scoped/$NAME-1.src.rock" "$NAME-1.rockspec" | cmp -s - "$ROCKSPEC"; then
        ok "make dist in a clean clone: $NAME-1.src.rock with the committed rockspec"
    else
        sed 's/^/# /' "$log"
        not_ok "make dist in a clean clone: $NAME-1.src.rock with the committed rockspec"
    fi
    if (cd "$tmp/scoped" && luarocks --lua-version 5.4 --only-server=/nonexistent build --tree "$tmp/tree" \
        "$ROCKSPEC") >"$log" 2>&1 && [ -f "$tmp/tree/lib/lua/5.4/scoped/core.so" ]; then
        ok "luarocks build $ROCKSPEC next to the tarball, in that clone"
    else
        sed 's/^/# /' "$log"
        not_ok "luarocks build $ROCKSPEC next to the tarball, in that clone"
    fi
    rm -rf -- "$tmp"
}

check() {
    [ -f "$NAME-1.src.rock" ] || dist >/dev/null
    by_hand
    if unzip -p "$NAME-1.src.rock" "$NAME-1.rockspec" | cmp -s - "$ROCKSPEC"; then
        ok "$NAME-1.src.rock carries $ROCKSPEC as committed"
    else
        not_ok "$NAME-1.src.rock carries $ROCKSPEC as committed"
    fi
    # the listing taken whole first: grep -q would quit early and, under
    # pipefail, unzip's SIGPIPE would fail the test at random
    local listing
    listing=$(unzip -Z1 "$NAME-1.src.rock")
    if grep -qx "$NAME.tar.gz" <<<"$listing"; then
        ok "$NAME-1.src.rock carries $NAME.tar.gz"
    else
        not_ok "$NAME-1.src.rock carries $NAME.tar.gz"
    fi
    install_and_require 5.4 lua5.4
    install_and_require 5.1 luajit LUA_INCDIR=/usr/include/luajit-2.1
    echo "1..$n"
}

case "${1:-}" in
    dist) dist ;;
    check) check ;;
    *) echo "usage: $0 dist|check" >&2; exit 2 ;;
esac
