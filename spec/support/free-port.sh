# free_port: prints a free TCP port on 127.0.0.1 (sourced by with-db.sh and
# spec/openresty/run.sh). The kernel picks one through python3 when it is
# there; otherwise a random high port nothing answers on (callers retry a
# bind that fails anyway, as another process may take it meanwhile).
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
        return
    fi
    local p i
    for ((i = 0; i < 50; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    return 1
}
