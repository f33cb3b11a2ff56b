#!/usr/bin/env bash
# The `restart` phase of `drover apply --json` on N lab hosts (issue #27
# item 3): median and worst (p100) over the hosts, for runit and systemd.
#
# Usage (root):  DROVER=target/release/drover bench/restart.sh               # runit and systemd, 20 hosts
#                INITS=runit N=20 OUT=bench/results/restart-x.txt DROVER=... bench/restart.sh
#
# The project: one service, `benchapp` (`sleep`, no health check), restarted
# when /etc/bench changes. Runs, on a fresh lab per init:
#   new      the first apply: the service is new (runit: runsvdir must
#            start its runsv; systemd: `enable --now`)
#   change   one file changed: the service restarts (it has run for seconds)
#   soon     host by host, two applies of a change in a row (with
#            `--confirm-timeout 0s`), the second measured: its restart comes
#            under a second after the previous start (runit's runsv sleeps a
#            second after a process that ran under one, unless the agent
#            waits that out; a rollback right after an apply does the same)
# Per run: restart phase per host, sorted, with median and p100, and the
# load average. Raw JSON reports go to $WORK (printed).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench/restart.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
N=${N:-20}
INITS=${INITS:-runit systemd}
LAB=${LAB:-restart}
WORK=$(mktemp -d /var/tmp/drover-restart.XXXXXX)
trap '"$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true' EXIT
log() { echo "[restart] $*" >&2; }

summary() { # report.json run-name
    python3 - "$@" <<'EOF'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
hosts = r["hosts"]
bad = [h["host"] for h in hosts if h["outcome"] != "changed"]
ms = sorted(h["phases"]["restart_ms"] for h in hosts)
print(f"  {sys.argv[2]:<7} restart median {statistics.median(ms):7.1f} ms  p100 {ms[-1]:7.1f} ms"
      f"  p100/median {ms[-1] / max(statistics.median(ms), 0.001):5.2f}"
      + (f"  NOT CHANGED: {bad}" if bad else ""))
print("          per host: " + " ".join(f"{x:.0f}" for x in ms))
EOF
}

{
    echo "drover $("$DROVER" --version | awk '{ print $2 }') ($DROVER), $N lab hosts, $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    for init in $INITS; do
        d=$WORK/$init/project
        mkdir -p "$d/roles" "$d/services" "$d/layers/bench/etc/bench"
        printf '[project]\nname = "restart"\n\n[defaults]\nroles = ["bench"]\n' > "$d/drover.toml"
        printf 'layers = ["bench"]\nservices = ["benchapp"]\n' > "$d/roles/bench.toml"
        printf 'command = "sleep 1000000"\nrestart-on = ["/etc/bench/**"]\n' > "$d/services/benchapp.toml"
        echo v1 > "$d/layers/bench/etc/bench/app.conf"
        log "fresh $init lab of $N hosts ($LAB)"
        "$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true
        "$DROVER" lab up "$N" --lab $LAB --init "$init" >/dev/null
        "$DROVER" lab inventory --lab $LAB > "$d/inventory.toml"
        sleep 3
        echo "$init (load $(cut -d' ' -f1-3 /proc/loadavg)):"
        "$DROVER" -C "$d" apply --json > "$WORK/$init/new.json" 2>"$WORK/$init/new.log"
        summary "$WORK/$init/new.json" new
        sleep 2
        echo v2 > "$d/layers/bench/etc/bench/app.conf"
        "$DROVER" -C "$d" apply --json --confirm-timeout 0s > "$WORK/$init/change.json" 2>"$WORK/$init/change.log"
        summary "$WORK/$init/change.json" change
        # Host by host: two applies in a row, the second measured (a run
        # over all hosts at once takes over a second between one host's
        # two restarts).
        for h in $(seq 1 "$N"); do
            echo "soon $h a" > "$d/layers/bench/etc/bench/app.conf"
            "$DROVER" -C "$d" apply --hosts "h$h" --json --confirm-timeout 0s > /dev/null 2>>"$WORK/$init/soon.log"
            echo "soon $h b" > "$d/layers/bench/etc/bench/app.conf"
            "$DROVER" -C "$d" apply --hosts "h$h" --json --confirm-timeout 0s > "$WORK/$init/soon-h$h.json" 2>>"$WORK/$init/soon.log"
        done
        python3 -c 'import json, sys; print(json.dumps({"hosts": [json.load(open(f))["hosts"][0] for f in sys.argv[1:]]}))' \
            "$WORK/$init"/soon-h*.json > "$WORK/$init/soon.json"
        summary "$WORK/$init/soon.json" soon
        echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    done
    echo "raw: $WORK"
} | tee ${OUT:+"$OUT"}
