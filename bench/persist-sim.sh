#!/usr/bin/env bash
# Connections that persist, at scale (#27 item 1): N simulated hosts
# (`--simulate`, no lab, no root) at LATENCY round trip, cold (`[ssh] persist`
# off: every host's link opened, its agent started, per command) against warm
# (through the resident: one held host and one kept agent per host, the
# command's round trips over the resident's socket, the simulated link
# between the resident and the agents, where a real link is), and the
# resident's idle memory per held host.
#
# Usage:  DROVER=target/release/drover bench/persist-sim.sh                # 10,000 hosts, 50 ms
#         N=1000 LATENCY=20ms REPS=5 DROVER=... bench/persist-sim.sh
#         OUT=bench/results/persist-sim-10000.txt DROVER=... bench/persist-sim.sh
#         PARALLEL=4096 DROVER=... bench/persist-sim.sh       # hosts at once (default: drover's, 512)
#
# The project is the quickstart (`drover init`) with N hosts (bench/lib.sh);
# links: LATENCY round trip, 100 mbit, no failures (the runs compared must
# not retry). Rows: `apply` with nothing changed, median wall of REPS runs,
# each with the load average before it, `via` and the hosts' median phases.
# With each warm run, the CPU the resident and the simulated hosts' process
# used in it (the controller's is in the raw measure files).
# Memory, read once the resident is idle (it trims its heap within 5 s of
# its last client): its RSS and anonymous memory holding 1 host and holding
# all N, and the difference per further host; the simulated hosts' process
# (the agents: on a real fleet, the hosts' own memory) separately.
#
# What the simulation leaves out: the SSH session (russh's connection, its
# cipher state and buffers: measured on lab hosts by bench/persist.sh), TCP
# (the kernel's socket buffers: here a Unix socket's), and the hosts' own
# work being on other machines (here the agents share this machine's cores
# with the controller and the resident).
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
N=${N:-10000}
REPS=${REPS:-3}
LATENCY=${LATENCY:-50ms}
LINK=(--sim-latency "$LATENCY" --sim-failure-rate 0)
PAR=(); [ -n "${PARALLEL:-}" ] && PAR=(--parallel "$PARALLEL")
WORK=$(mktemp -d /var/tmp/drover-persist-sim.XXXXXX)
export XDG_RUNTIME_DIR=$WORK/rt
mkdir -m 700 "$XDG_RUNTIME_DIR"
resident_pids() { cat "$XDG_RUNTIME_DIR"/drover/*.pid 2>/dev/null || true; }
cleanup() {
    for p in $(resident_pids); do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[persist-sim] $*" >&2; }
# shellcheck source=bench/lib.sh
source bench/lib.sh
d=$WORK/project
sim_project "$d" "$N"
cp "$d/drover.toml" "$d/drover.toml.off"
persist() { # on|off
    cp "$d/drover.toml.off" "$d/drover.toml"
    [ "$1" = on ] && printf '\n[ssh]\npersist = "10m"\n' >> "$d/drover.toml"
    true
}

# One timed apply (extra flags after the name); report in $WORK/$1.json.
run() {
    local name=$1; shift
    python3 bench/measure.py "$WORK/$name.measure.json" -- \
        bash -c 'exec "$0" -C "$1" apply --json --simulate "$2" "${@:4}" > "$3"' \
        "$DROVER" "$d" "$WORK/hosts" "$WORK/$name.json" "${LINK[@]}" "$@" 2>"$WORK/$name.log" \
        || { log "$name failed; see $WORK/$name.log"; tail -5 "$WORK/$name.log" >&2; }
}
all_resident() {
    python3 -c 'import json,sys; sys.exit(any(h.get("via") != "resident" for h in json.load(open(sys.argv[1]))["hosts"]))' "$1"
}
summary() { # label names...
    python3 - "$WORK" "$@" <<'PY'
import json, statistics, sys
work, label, names = sys.argv[1], sys.argv[2], sys.argv[3:]
ms = [json.load(open(f"{work}/{n}.measure.json")) for n in names]
walls = [m["wall_s"] for m in ms]
cpus = [m["cpu_user_s"] + m["cpu_sys_s"] for m in ms]
per = {p: [] for p in ["connect", "hello", "diff"]}
vias, outcomes = {}, {}
for n in names:
    for h in json.load(open(f"{work}/{n}.json"))["hosts"]:
        vias[h.get("via", "?")] = vias.get(h.get("via", "?"), 0) + 1
        outcomes[h["outcome"]] = outcomes.get(h["outcome"], 0) + 1
        for p in per:
            per[p].append(h["phases"][p + "_ms"])
med = " ".join(f"{p}={statistics.median(v):.1f}" for p, v in per.items())
print(f"{label:8} wall median {statistics.median(walls):6.2f} s (min {min(walls):.2f}, max {max(walls):.2f}, {len(walls)} runs)  "
      f"via {vias}  {outcomes}")
print(f"{'':8} host medians (ms): {med}; drover's own CPU median {statistics.median(cpus):.2f} s (in-process agents included when cold)")
PY
}
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$2/smaps_rollup"; }
rollup() { awk '/^(Rss|Anonymous|Locked):/ { printf "%s %s KiB  ", $1, $2 }' "/proc/$1/smaps_rollup"; echo; }
hosts_pid() { pgrep -P "$1" -f -- --sim-hosts; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

{
    echo "drover $("$DROVER" --version | awk '{ print $2 }') ($DROVER), $N simulated hosts, links ${LATENCY} round trip 100mbit no failures, ${PARALLEL:-512 (default)} hosts at once, $(nproc) cores"
    persist off
    log "first apply ($N hosts)"
    run first
    echo "first apply: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wall_s"])' "$WORK/first.measure.json") s (not compared)"
    names=()
    for i in $(seq "$REPS"); do echo "load before cold-$i: $(load)"; run "cold-$i" "${PAR[@]}"; names+=("cold-$i"); done
    summary cold "${names[@]}"

    persist on
    log "memory: the resident holding 1 host"
    for i in 1 2; do run "one-$i" --hosts s1; done
    sleep 6
    pid=$(resident_pids)
    one_rss=$(kib Rss "$pid"); one_anon=$(kib Anonymous "$pid")
    echo "resident holding 1 host: $(rollup "$pid")"
    log "warm-up: until every host goes through the resident"
    for i in $(seq 10); do run warmup --parallel 512; all_resident "$WORK/warmup.json" && break; done
    sleep 6
    all_rss=$(kib Rss "$pid"); all_anon=$(kib Anonymous "$pid")
    echo "resident holding $N hosts: $(rollup "$pid")"
    echo "resident per further held host: RSS $(( (all_rss - one_rss) * 1024 / (N - 1) )) bytes, anonymous $(( (all_anon - one_anon) * 1024 / (N - 1) )) bytes"
    hp=$(hosts_pid "$pid")
    echo "simulated hosts' process (the agents; on a real fleet the hosts' own) holding $N kept agents: $(rollup "$hp") threads $(awk '/^Threads/ { print $2 }' "/proc/$hp/status")"
    names=()
    for i in $(seq "$REPS"); do
        r0=$(cpu "$pid"); h0=$(cpu "$hp")
        echo "load before warm-$i: $(load)"
        run "warm-$i" "${PAR[@]}"
        echo "  warm-$i: CPU of the resident $(python3 -c "print(f'{$(cpu "$pid") - $r0:.2f}')") s, of the simulated hosts $(python3 -c "print(f'{$(cpu "$hp") - $h0:.2f}')") s"
        names+=("warm-$i")
    done
    summary warm "${names[@]}"
    echo "resident after the warm runs: $(rollup "$pid")"
    echo "load after: $(load)"
    echo "raw: $WORK"
} | tee ${OUT:+"$OUT"}
