#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for Strata's tests, idempotent.
#
#   scripts/pg.sh start   create (first time) and start the cluster, create database `strata`
#   scripts/pg.sh stop    stop it (the data directory stays for the next start)
#   scripts/pg.sh url     print the connection URL (postgres://postgres@127.0.0.1:PORT/strata)
#
# Uses Debian's PostgreSQL 15 (installed with apt when initdb/pg_ctl are missing), run as
# user `postgres`, trust authentication, listening on 127.0.0.1 only, fsync off: for tests,
# never for data that matters.
#
# Environment knobs:
#   STRATA_PG_PORT   default 55432
#   STRATA_PG_DIR    default $HOME/.cache/strata-pg (data in $STRATA_PG_DIR/data)
#   STRATA_PG_SSL_CERT, STRATA_PG_SSL_KEY   PEM server certificate and key: the cluster runs
#                    with ssl=on and a pg_hba.conf that refuses TCP connections without TLS
#                    (the TLS variant, for tests of the catalog's sslmode handling)
set -euo pipefail

PORT=${STRATA_PG_PORT:-55432}
BASE=${STRATA_PG_DIR:-$HOME/.cache/strata-pg}
DATA=$BASE/data
LOG=$BASE/postgres.log
BIN=/usr/lib/postgresql/15/bin
DATABASE=strata

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Runs a command as user postgres from a directory it can read.
as_postgres() {
    (cd /tmp && as_root runuser -u postgres -- "$@")
}

install_if_missing() {
    if [[ -x $BIN/pg_ctl && -x $BIN/initdb ]]; then
        return
    fi
    echo "pg.sh: installing postgresql with apt" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    if [[ ! -x $BIN/pg_ctl ]]; then
        echo "pg.sh: $BIN/pg_ctl still missing after installing postgresql" >&2
        exit 1
    fi
}

# Creates the data directory with initdb once; postgres must own it and reach it.
init_cluster() {
    if [[ -f $DATA/PG_VERSION ]]; then
        return
    fi
    as_root mkdir -p "$BASE"
    as_root chown postgres:postgres "$BASE"
    as_root chmod 0700 "$BASE"
    # postgres must be able to walk down to $BASE.
    local dir
    dir=$(dirname "$BASE")
    while [[ $dir != / ]]; do
        as_root chmod o+x "$dir"
        dir=$(dirname "$dir")
    done
    as_postgres "$BIN/initdb" --auth=trust --username=postgres --encoding=UTF8 -D "$DATA" >/dev/null
}

is_running() {
    as_postgres "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

# The TLS variant: the certificate and key in the data directory, and a
# pg_hba.conf that accepts TCP only over TLS.
tls_options() {
    if [[ -z ${STRATA_PG_SSL_CERT:-} || -z ${STRATA_PG_SSL_KEY:-} ]]; then
        return
    fi
    as_root install -o postgres -g postgres -m 0644 "$STRATA_PG_SSL_CERT" "$DATA/server.crt"
    as_root install -o postgres -g postgres -m 0600 "$STRATA_PG_SSL_KEY" "$DATA/server.key"
    printf '%s\n' 'local all all trust' 'hostssl all all 127.0.0.1/32 trust' \
        'hostnossl all all 0.0.0.0/0 reject' | as_root tee "$DATA/pg_hba.conf" >/dev/null
    echo "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
}

start() {
    install_if_missing
    init_cluster
    if ! is_running; then
        local tls
        tls=$(tls_options)
        as_postgres "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 $tls" >/dev/null
    fi
    local exists
    exists=$(as_postgres "$BIN/psql" "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=prefer" -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")
    if [[ $exists != 1 ]]; then
        as_postgres "$BIN/psql" "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=prefer" -qc \
            "CREATE DATABASE $DATABASE" >/dev/null
    fi
    echo "pg.sh: PostgreSQL running at $(url)" >&2
}

stop() {
    if [[ -f $DATA/PG_VERSION ]] && is_running; then
        as_postgres "$BIN/pg_ctl" stop -D "$DATA" -m fast -w >/dev/null
    fi
}

url() {
    echo "postgres://postgres@127.0.0.1:$PORT/$DATABASE"
}

case ${1:-} in
start) start ;;
stop) stop ;;
url) url ;;
*)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
