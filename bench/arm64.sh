#!/usr/bin/env bash
# Apply times on arm64 lab hosts (issue #30), beside amd64 ones of the same
# init, same project: the first apply (agent pushed, service new), a no-op,
# and a one-file change that restarts the service; the whole run's wall
# time and each phase's median over the hosts, from `drover apply --json`.
#
# Usage (root):  DROVER=target/debug/drover bench/arm64.sh        # 3 hosts per kind
#                N=5 KINDS="runit arm64-runit" OUT=bench/results/arm64-x.txt bench/arm64.sh
#
# The arm64 hosts are EMULATED: sshd, runit, the services and the aarch64
# agent run under qemu-user on this x86_64 machine (binfmt_misc), so these
# figures say what emulation costs, not what a real ARM board takes (a
# Raspberry Pi or an ARM cloud core runs the agent natively; none was
# measured). The controller needs the aarch64
# agent (`scripts/build-agents`, DROVER_AGENTS_DIR when building it).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench/arm64.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
N=${N:-3}
KINDS=${KINDS:-runit arm64-runit}
OUT=${OUT:-bench/results/arm64-$(date -u +%Y%m%d).txt}
WORK=$(mktemp -d /var/tmp/drover-arm64.XXXXXX)
cleanup() { for k in $KINDS; do "$DROVER" lab down --lab "a64-$k" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

row() { # kind run report.json
    python3 - "$@" <<'PY'
import json, statistics, sys
kind, run, path = sys.argv[1:]
r = json.load(open(path))
hosts = r["hosts"]
want = {"first": "changed", "noop": "unchanged", "change": "changed"}[run]
bad = [h["host"] for h in hosts if h["outcome"] != want]
assert not bad, f"{kind} {run}: {bad} not {want}"
med = lambda k: statistics.median(h["phases"][k] for h in hosts)
print(f"| {kind:<12} | {run:<6} | {r['duration_ms']:>7} | {med('connect_ms'):>8.0f} | {med('hello_ms'):>6.0f} "
      f"| {med('diff_ms'):>5.0f} | {med('send_ms'):>5.0f} | {med('activate_ms'):>8.0f} | {med('restart_ms'):>7.0f} "
      f"| {med('health_ms'):>6.0f} | {med('confirm_ms'):>7.0f} |")
PY
}

{
    echo "# bench/arm64.sh, $(date -u +%FT%TZ), N=$N hosts per kind, $(nproc) cores, controller $DROVER"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "| kind         | run    | wall ms | connect  | hello  | diff  | send  | activate | restart | health | confirm |"
    echo "|--------------|--------|---------|----------|--------|-------|-------|----------|---------|--------|---------|"
} | tee "$OUT"
for kind in $KINDS; do
    lab="a64-$kind"
    "$DROVER" lab down --lab "$lab" >/dev/null 2>&1 || true
    "$DROVER" lab up "$N" --kinds "$kind" --lab "$lab" >"$WORK/$kind-up.log" 2>&1
    proj="$WORK/$kind"
    "$DROVER" init "$proj" >/dev/null
    "$DROVER" lab inventory --lab "$lab" >"$proj/inventory.toml"
    (cd "$proj" && "$DROVER" apply --json >"$WORK/$kind-first.json" 2>"$WORK/$kind-first.err")
    row "$kind" first "$WORK/$kind-first.json" | tee -a "$OUT"
    (cd "$proj" && "$DROVER" apply --json >"$WORK/$kind-noop.json" 2>"$WORK/$kind-noop.err")
    row "$kind" noop "$WORK/$kind-noop.json" | tee -a "$OUT"
    sed -i 's/<h1>/<h1>v2 /' "$proj/layers/site/srv/site/index.html.j2"
    (cd "$proj" && "$DROVER" apply --json >"$WORK/$kind-change.json" 2>"$WORK/$kind-change.err")
    row "$kind" change "$WORK/$kind-change.json" | tee -a "$OUT"
    "$DROVER" lab down --lab "$lab" >/dev/null 2>&1
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw reports in $WORK" | tee -a "$OUT"
mkdir -p "${OUT%.txt}"
cp "$WORK"/*.json "${OUT%.txt}/"
