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

# start_pair DIR PRIMARY_PORT STANDBY_PORT: a primary in DIR/primary and a streaming hot
# standby of it in DIR/standby (application_name standby1). The primary commits
# synchronously: a commit returns only once the standby has it (synchronous_standby_names,
# set after the base backup so the standby does not inherit it).
start_pair() {
    local dir=$1 p1=$2 p2=$3 bin
    bin=$(pg_bin)
    start_postgres "$dir/primary" "$p1"
    mkdir -p "$dir/standby"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir/standby"
    chmod 711 "$dir/standby"
    run_as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D "$dir/standby/data" \
        -X stream -R >"$dir/standby/basebackup.log" 2>&1
    cat >>"$dir/standby/data/postgresql.conf" <<CONF
port = $p2
unix_socket_directories = '$dir/standby'
hot_standby = on
CONF
    cat >>"$dir/standby/data/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=127.0.0.1 port=$p1 user=postgres application_name=standby1'
CONF
    run_as_postgres "$bin/pg_ctl" -D "$dir/standby/data" -l "$dir/standby/server.log" -w -t 60 start >/dev/null
    run_as_postgres "$bin/psql" -h 127.0.0.1 -p "$p1" -U postgres -qAt \
        -c "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1)'" -c "SELECT pg_reload_conf()" >/dev/null
    # Wait until the standby streams synchronously.
    for _ in $(seq 1 100); do
        state=$(run_as_postgres "$bin/psql" -h 127.0.0.1 -p "$p1" -U postgres -qAt \
            -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
        [ "$state" = "sync" ] && return 0
        sleep 0.1
    done
    echo "the standby did not become synchronous" >&2
    return 1
}

# promote DIR: the standby in DIR becomes a primary.
promote() {
    run_as_postgres "$(pg_bin)/pg_ctl" -D "$1/data" -w promote >/dev/null
}

# crash DIR: the cluster in DIR stops at once, as a machine failure would.
crash() {
    run_as_postgres "$(pg_bin)/pg_ctl" -D "$1/data" -m immediate -w stop >/dev/null
}
