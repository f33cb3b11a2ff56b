#!/usr/bin/env bash
# One run split across workers (`apply --workers W`, docs/operations.md):
# first applies of the same simulated fleet by one plain controller and by
# 1, 2 and 4 local worker processes, state in a throwaway local PostgreSQL
# (loopback, fsync on). Each run gets a fresh fleet directory.
#
# Usage:  DROVER=target/release/drover bench/workers.sh
#         HOSTS=1000 WORKERS="1 2" DROVER=target/debug/drover bench/workers.sh
# Needs root (the server runs as `postgres`) and Debian's postgresql.
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
HOSTS="${HOSTS:-10000}"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /var/tmp/drover-workers-bench.XXXXXX)
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

export DROVER_STATE_URL=$URL
run() { # label extra-args...
    local label=$1 out=$WORK/time.txt rc=0
    shift
    /usr/bin/time -f "%e %M" -o "$out" "$DROVER" -C "$WORK/project" apply --simulate "$WORK/hosts-$label" \
        ${LATENCY:+--sim-latency "$LATENCY"} "$@" > "$WORK/last.txt" 2>&1 || rc=$?
    [ "$rc" -le 2 ] || { tail -5 "$WORK/last.txt" >&2; exit 1; }
    read -r wall rss < "$out"
    echo "| $label | $wall s | $((rss / 1024)) MiB | $(tail -1 "$WORK/last.txt") |"
}

echo "Machine: $(nproc) cores, kernel $(uname -r), $(basename "$(dirname "$PGBIN")") PostgreSQL; $HOSTS simulated hosts${LATENCY:+, $LATENCY round trip}; drover: $DROVER"
echo
echo "| controllers | wall (first apply) | peak RSS (largest of apply and its local workers) | summary |"
echo "|---|---|---|---|"
run "plain"
for w in ${WORKERS:-1 2 4}; do run "workers-$w" --workers "$w"; done
