#!/usr/bin/env bash
# The state backends' cost per host: the same --simulate applies (first
# apply, no-op applies) with the state in SQLite and in PostgreSQL (a
# throwaway local server, loopback, fsync on), plus the store-only figures
# of crates/drover-state/tests/it/overhead.rs (record_hosts of 10,000 results…).
#
# Usage:  DROVER=target/release/drover bench/state-backends.sh
#         HOSTS=2000 DROVER=target/debug/drover bench/state-backends.sh
# Needs root (the server runs as `postgres`) and Debian's postgresql.
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
HOSTS="${HOSTS:-10000}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
pg_start state-bench

sim_project "$WORK/project" "$HOSTS"

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
