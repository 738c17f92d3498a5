#!/usr/bin/env bash
# ngx-headers.sh DIR — nginx's headers for csrc/ngx/ngx_wait.c, configured as
# the installed nginx was built: Debian's nginx-dev ships the source headers
# and the configure flags (conf_flags) but not objs/ngx_auto_config.h, which
# `./configure` writes (as for any dynamic module; about 6 s, once). Copies
# /usr/share/nginx/src to DIR/src, configures it there, and prints the -I
# flags on stdout. Exit 3 (nothing printed) when nginx-dev is absent; the
# Makefile then skips ngx_wait.so.
set -uo pipefail
SRC=${NGINX_DEV_SRC:-/usr/share/nginx/src}
dir=${1:?usage: ngx-headers.sh DIR}
[ -f "$SRC/src/core/ngx_config.h" ] && [ -f "$SRC/conf_flags" ] && [ -x "$SRC/configure" ] || exit 3
out=$dir/src
if [ ! -f "$out/objs/ngx_auto_config.h" ] || [ "$SRC/conf_flags" -nt "$out/objs/ngx_auto_config.h" ]; then
    rm -rf "$out"
    mkdir -p "$dir"
    cp -R "$SRC" "$out" || exit 1
    # shellcheck disable=SC1091  # Debian's NGX_CONF_FLAGS=( ... )
    ( cd "$out" && . ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" ) >"$dir/configure.log" 2>&1 || {
        echo "ngx-headers.sh: configure failed, see $dir/configure.log" >&2
        rm -f "$out/objs/ngx_auto_config.h"
        exit 1
    }
fi
abs=$(cd "$out" && pwd)
for d in src/core src/event src/event/modules src/os/unix objs; do printf -- '-isystem %s/%s ' "$abs" "$d"; done
echo
