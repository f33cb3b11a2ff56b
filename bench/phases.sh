#!/usr/bin/env bash
# drover alone on N lab hosts: wall time, controller peak memory and the
# per-phase breakdown (`apply --json` `phases`) of each run.
#
# Usage (root):  DROVER=target/release/drover bench/phases.sh            # 20 hosts
#                N=100 PHASES="first" DROVER=... bench/phases.sh           # memory at 100
#                OUT=bench/results/phases-20-after.txt DROVER=... bench/phases.sh
#                EXTRA="--parallel 32" ...                                   # extra apply/rollback flags
#
# The deployment is the one in bench/compare.sh (50 small files, one 5 MiB
# random file, one template, one runit service restarted when /etc/bench
# changes). Runs, each timed with bench/measure.py:
#   first     hosts start empty (the agent is pushed too)
#   noop      nothing changed
#   change    one small file edited: restart, health check, confirmation
#   rollback  `drover rollback`: back to the generation before `change`
# For each run: wall time, the controller's max RSS, and the `phases` of the
# JSON report summed over hosts plus the slowest host's. The raw JSON goes to
# $WORK (printed); the summary to stdout (and $OUT when set).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench/phases.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
cd "$(dirname "$0")/.."
REPO=$PWD
DROVER=$(realpath "${DROVER:-target/release/drover}")
N=${N:-20}
PHASES=${PHASES:-first noop change rollback}
LAB=${LAB:-phases}
WORK=$(mktemp -d /var/tmp/drover-phases.XXXXXX)
trap '"$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true' EXIT
log() { echo "[phases] $*" >&2; }

d=$WORK/project
mkdir -p "$d/roles" "$d/services" "$d/layers/bench/etc/bench/small" "$d/layers/bench/opt/bench"
for i in $(seq -w 1 50); do
    { echo "# small file $i"; head -c 200 /dev/urandom | base64 -w 76; } > "$d/layers/bench/etc/bench/small/f$i.conf"
done
head -c $((5 << 20)) /dev/urandom > "$d/layers/bench/opt/bench/blob.bin"
printf '[project]\nname = "bench"\n\n[defaults]\nroles = ["bench"]\n\n[vars]\ngreeting = "hello"\n' > "$d/drover.toml"
printf 'layers = ["bench"]\nservices = ["benchapp"]\n' > "$d/roles/bench.toml"
printf 'command = "sleep 1000000"\nrestart-on = ["/etc/bench/**"]\n' > "$d/services/benchapp.toml"
printf '# rendered for {{ host.name }}\ngreeting = "{{ greeting }}"\n' > "$d/layers/bench/etc/bench/app.conf.j2"

log "fresh lab of $N hosts ($LAB)"
"$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true
"$DROVER" lab up "$N" --lab $LAB >/dev/null
"$DROVER" lab inventory --lab $LAB > "$d/inventory.toml"
sleep 2

summary() { # measure.json report.json phase
    python3 - "$@" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))
names = ["connect", "hello", "diff", "send", "activate", "restart", "health", "confirm"]
hosts = r["hosts"]
outcomes = {}
for h in hosts:
    outcomes[h["outcome"]] = outcomes.get(h["outcome"], 0) + 1
slow = max(hosts, key=lambda h: h["duration_ms"])
tot = r.get("phases", {})
def row(p):
    return " ".join(f"{n}={p.get(n + '_ms', 0):.0f}" for n in names)
print(f"{sys.argv[3]}: wall {m['wall_s']:.3f} s, controller max RSS {m['maxrss_kb'] / 1024:.0f} MiB, peak PSS {m['peak_pss_kb'] / 1024:.0f} MiB, "
      f"hosts {outcomes}")
print(f"  summed over hosts (ms): {row(tot)}")
print(f"  slowest host {slow['host']} ({slow['duration_ms']} ms): {row(slow.get('phases', {}))}")
EOF
}

cmd_for() {
    case $1 in
        rollback) echo rollback ;;
        *) echo apply ;;
    esac
}

{
    echo "drover $("$DROVER" --version | awk '{ print $2 }') ($DROVER), $N lab hosts, flags: ${EXTRA:-none}, $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    for phase in $PHASES; do
        if [ "$phase" = change ]; then
            echo "# changed $(date +%s.%N)" >> "$d/layers/bench/etc/bench/small/f01.conf"
        fi
        log "$phase"
        # measure.py passes the command's stdout to its stderr: the shell
        # it runs writes the JSON report to a file itself.
        python3 "$REPO/bench/measure.py" "$WORK/$phase.measure.json" -- \
            bash -c 'exec "$0" -C "$1" "$2" --json $4 > "$3"' "$DROVER" "$d" "$(cmd_for "$phase")" "$WORK/$phase.json" "${EXTRA:-}" \
            2>"$WORK/$phase.log" || { log "$phase failed; see $WORK/$phase.log"; tail -5 "$WORK/$phase.log" >&2; }
        summary "$WORK/$phase.measure.json" "$WORK/$phase.json" "$phase"
    done
    echo "raw: $WORK"
} | tee ${OUT:+"$OUT"}
