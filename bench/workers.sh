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
# shellcheck source=bench/lib.sh
source bench/lib.sh
pg_start workers-bench

sim_project "$WORK/project" "$HOSTS"

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
