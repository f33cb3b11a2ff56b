#!/usr/bin/env bash
# Soak: `drover serve --reconcile` (heal) on a lab fleet under random faults,
# hand drift and releases; prints the summary table and commits-ready raw
# results under bench/results/. See bench/soak.py for what it injects and
# how it counts.
#
# Usage (root):  bench/soak.sh                       # release build; 20 hosts, 10 min, seed 1
#                HOSTS=4 MINUTES=2 SEED=7 DROVER=target/debug/drover bench/soak.sh
#
# Exit 0 when no host was ever half-applied and every host converged at the
# end; 1 otherwise.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/soak.sh needs root (lab fleet)" >&2; exit 3; }
cd "$(dirname "$0")/.."
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
HOSTS="${HOSTS:-20}" MINUTES="${MINUTES:-10}" SEED="${SEED:-1}" EVERY="${EVERY:-15s}"
OUT="bench/results/soak-${HOSTS}h-${MINUTES}m-seed${SEED}-$(date +%Y%m%d)"
mkdir -p bench/results
python3 bench/soak.py --drover "$DROVER" --hosts "$HOSTS" --minutes "$MINUTES" --seed "$SEED" \
    --pass-every "$EVERY" --out "$OUT.json" 2> "$OUT.log" | tee "$OUT.md"
