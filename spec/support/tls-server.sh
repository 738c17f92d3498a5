#!/usr/bin/env bash
# tls-server.sh start DIR [OWNER_PID] | stop DIR — a second throwaway MariaDB with TLS, for
# spec/tls_spec.lua.
#
#   start DIR  makes, in DIR (which must exist and be empty): a CA (ca.pem), a
#              server certificate it signed for IP 127.0.0.1 only (server.pem,
#              server-key.pem), a second CA that signed nothing (other-ca.pem);
#              a fresh datadir; and starts mariadbd with --ssl-ca/--ssl-cert/
#              --ssl-key on a free 127.0.0.1 port. Prints "PORT PID" once the
#              server answers. A watchdog stops the server if OWNER_PID (the
#              spec's Lua process; default: our parent) goes away without
#              calling stop.
#   stop DIR   stops that server (TERM, then KILL after 10 s) and removes DIR.
# The server itself is extra-server.sh's, with the certificates as options.
set -uo pipefail

cmd=${1:-}
dir=${2:-}
here=$(dirname "${BASH_SOURCE[0]}")
[ -n "$cmd" ] && [ -n "$dir" ] && [ -d "$dir" ] || { echo "usage: $0 start DIR [OWNER_PID] | stop DIR" >&2; exit 2; }
[ "$cmd" = stop ] && exec bash "$here/extra-server.sh" stop "$dir"
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
owner=${3:-$PPID}

(
    cd "$dir" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=scoped test CA" \
        -keyout ca-key.pem -out ca.pem &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
        -keyout other-ca-key.pem -out other-ca.pem &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server-key.pem -out server.csr &&
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.pem
) >"$dir/openssl.log" 2>&1 || { echo "tls-server: openssl failed:" >&2; cat "$dir/openssl.log" >&2; exit 1; }

exec bash "$here/extra-server.sh" start "$dir" "$owner" --character-set-server=utf8mb4 \
    --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server-key.pem"
