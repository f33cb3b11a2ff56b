# Sourced by the bench scripts that need a state store in PostgreSQL:
# `pg_start NAME` makes WORK (a fresh directory under /var/tmp, removed on
# exit), starts a throwaway PostgreSQL cluster in it on a free loopback port
# (fsync on, as a real server), creates database `fleet` and sets URL.
# Needs root (the server runs as `postgres`) and Debian's postgresql.
pg_start() {
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    WORK=$(mktemp -d "/var/tmp/drover-$1.XXXXXX")
    chmod 755 "$WORK"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    trap pg_cleanup EXIT
    mkdir "$WORK/pg" && chown postgres: "$WORK/pg" && chmod 700 "$WORK/pg"
    runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -k $WORK/pg" start >/dev/null || { cat "$WORK/pg/server.log" >&2; exit 1; }
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres fleet
    URL="postgres://postgres@127.0.0.1:$PORT/fleet?sslmode=disable"
}

pg_cleanup() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
