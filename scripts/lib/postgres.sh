# Sourced by scripts/test: a throwaway PostgreSQL cluster on loopback for the tests.
# initdb and postgres refuse to run as root, so the cluster belongs to the unprivileged
# system user `postgres` (created by Debian's package). Data checksums on, as in production.
# scripts/test sets RAMPART_TEST_POSTGRES_URL (a superuser URL the tests create databases
# with) and RAMPART_TEST_POSTGRES_CA (the CA of the server's TLS certificate).

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] || { echo "PostgreSQL binaries not found under /usr/lib/postgresql" >&2; return 1; }
    echo "$dir"
}

# run_as_postgres CMD...: the cluster's commands, as the unprivileged user.
run_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# make_certs DIR: a test CA (ca.pem), a server certificate for localhost and 127.0.0.1 signed
# by it (server.pem, server.key), and an unrelated CA (other-ca.pem) that must be refused.
make_certs() {
    local dir=$1
    local curve=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${curve[@]}" -days 2 -subj "/CN=Rampart test CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -x509 "${curve[@]}" -days 2 -subj "/CN=Unrelated CA" \
        -keyout "$dir/other-ca.key" -out "$dir/other-ca.pem" 2>/dev/null
    openssl req "${curve[@]}" -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    chmod 600 "$dir/server.key"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir/server.key" "$dir/server.pem"
}

# start_postgres DIR PORT: initdb DIR (data checksums, trust on loopback), TLS on with a
# test CA, and start it.
start_postgres() {
    local dir=$1 port=$2 bin
    bin=$(pg_bin)
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir"
    chmod 711 "$dir"
    make_certs "$dir"
    run_as_postgres "$bin/initdb" -D "$dir/data" --data-checksums -A trust -U postgres >"$dir/initdb.log" 2>&1
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 400
fsync = on
synchronous_commit = on
wal_level = replica
max_wal_senders = 4
ssl = on
ssl_cert_file = '$dir/server.pem'
ssl_key_file = '$dir/server.key'
CONF
    run_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

stop_postgres() {
    local dir=$1 bin
    bin=$(pg_bin)
    [ -f "$dir/data/postmaster.pid" ] && run_as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
    rm -rf "$dir"
}

# A free loopback port above 20000.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
