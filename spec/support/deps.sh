#!/usr/bin/env bash
# deps.sh [EXTRA-PACKAGE...] — make sure the Debian packages the build and the
# tests need are installed.  Quiet when they all are.
#
# Missing ones are installed with apt-get when running as root on Debian;
# otherwise the exact apt-get line is printed to stderr and we exit 1.
# Installing mariadb-server may try to start the system MariaDB (in containers
# policy-rc.d usually denies it): the tests never use it — with-db.sh always
# runs its own throwaway server on its own port and socket.
# luajit2 (OpenResty's LuaJIT) conflicts with Debian's plain luajit package,
# which apt replaces.
set -uo pipefail

pkgs=(
    lua5.4 liblua5.4-dev
    luajit2 libluajit2-5.1-dev
    luarocks lua-busted lua-cjson lua-socket
    libmariadb-dev mariadb-server
    pkg-config gcc make
    "$@"
)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: no dpkg-query (not Debian?): cannot check for ${pkgs[*]}" >&2
    exit 0
fi

missing=()
check() {
    local p status
    missing=()
    for p in "${pkgs[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
        [ "$status" = "install ok installed" ] || missing+=("$p")
    done
}

check
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "install them with:" >&2
    if [ "$(id -u)" != 0 ]; then line="sudo $line"; fi
    echo "  $line" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -q -o DPkg::Lock::Timeout=300; then
    echo "deps.sh: apt-get update failed" >&2
    exit 1
fi
if ! apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" </dev/null; then
    echo "deps.sh: failed: $line" >&2
    exit 1
fi
check
if [ ${#missing[@]} -ne 0 ]; then
    echo "deps.sh: still not installed after apt-get: ${missing[*]}" >&2
    exit 1
fi
