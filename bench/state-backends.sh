#!/usr/bin/env bash
# The state backends' cost per host: the same --simulate applies (first
# apply, no-op applies) with the state in SQLite and in PostgreSQL (a
# throwaway local server, loopback, fsync on), plus the store-only figures
# of crates/drover-state/tests/overhead.rs (record_hosts of 10,000 results…).
#
# Usage:  DROVER=target/release/drover bench/state-backends.sh
#         HOSTS=2000 DROVER=target/debug/drover bench/state-backends.sh
# Needs root (the server runs as `postgres`) and Debian's postgresql.
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
HOSTS="${HOSTS:-10000}"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /var/tmp/drover-state-bench.XXXXXX)
chmod 755 "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir "$WORK/pg" && chown postgres: "$WORK/pg" && chmod 700 "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $WORK/pg" start >/dev/null || { cat "$WORK/pg/server.log" >&2; exit 1; }
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres fleet
URL="postgres://postgres@127.0.0.1:$PORT/fleet?sslmode=disable"

"$DROVER" init "$WORK/project" >/dev/null
python3 - "$HOSTS" > "$WORK/project/inventory.toml" <<'PY'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f'[hosts.s{i}]\naddress = "10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"\n')
PY

run() { # backend label
    local out=$WORK/time.txt
    if [ "$1" = postgres ]; then export DROVER_STATE_URL=$URL; else unset DROVER_STATE_URL; fi
    local rc=0
    /usr/bin/time -f "%e %M" -o "$out" "$DROVER" -C "$WORK/project" apply --simulate "$WORK/hosts-$1" \
        > "$WORK/last.txt" 2>&1 || rc=$?
    # 2: some hosts failed (a loaded machine times some out): still a figure.
    [ "$rc" -le 2 ] || { tail -5 "$WORK/last.txt" >&2; exit 1; }
    read -r wall rss < "$out"
    echo "| $1 | $2 | $wall s | $((rss / 1024)) MiB | $(tail -1 "$WORK/last.txt") |"
}

echo "Machine: $(nproc) cores, kernel $(uname -r), $(basename "$(dirname "$PGBIN")") PostgreSQL; $HOSTS simulated hosts; drover: $DROVER"
echo
echo "| backend | run | wall | peak RSS | summary |"
echo "|---|---|---|---|---|"
for b in sqlite postgres; do
    run "$b" "first apply"
    for i in $(seq "${NOOPS:-3}"); do run "$b" "no-op apply ($i)"; done
done
