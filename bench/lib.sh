# Sourced by the bench scripts.
#
# `sim_project DIR N`: the quickstart project (`drover init`, with $DROVER) in
# DIR with N hosts s1..sN for `--simulate` runs (addresses never dialled).
sim_project() {
    "$DROVER" init "$1" >/dev/null
    python3 - "$2" > "$1/inventory.toml" <<'PY'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f'[hosts.s{i}]\naddress = "10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"\n')
PY
}

# `pg_start NAME`, for a state store in PostgreSQL: makes WORK (a fresh directory under /var/tmp, removed on
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
