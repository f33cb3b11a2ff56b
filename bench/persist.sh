#!/usr/bin/env bash
# Connections that persist (#27 item 1, `[ssh] persist`): cold (direct SSH
# logins) against warm (through the resident's held sessions and the agents
# it keeps between commands) on N lab hosts, and the resident's memory per
# held host (its session and its kept agent's channel).
#
# Usage (root):  DROVER=target/release/drover bench/persist.sh              # 20 hosts
#                N=100 RUNS=mem DROVER=... bench/persist.sh                  # memory only, at 100
#                OUT=bench/results/persist-20.txt DROVER=... bench/persist.sh
#                RUNS=table N=10000 DROVER=... bench/persist.sh            # no lab: the host table
#
# The deployment is bench/phases.sh's (50 small files, a 5 MiB file, a
# template, a runit service restarted when /etc/bench changes). Rows:
#   noop     `apply` with nothing changed: median wall of $REPS runs
#   change   one small file edited: restart, health check and the
#            confirmation (a fresh login either way): median of $REPS
# each cold (`[ssh] persist` off) then warm (on; the first command that
# starts the resident is not counted), with the hosts' median per-phase
# times; `via` says how the hosts were reached. Then memory: the resident's RSS holding 1 host and holding all N
# (from /proc/PID/status), and the difference per host. `table`: a resident
# for an inventory of N hosts that answer nothing (10.x addresses, no lab),
# holding no session: what each host costs before its session (project and
# slot). Simulated hosts through the resident: bench/persist-sim.sh; where a
# held host's memory goes: bench/persist-heap.sh.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench/persist.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
cd "$(dirname "$0")/.."
REPO=$PWD
DROVER=$(realpath "${DROVER:-target/release/drover}")
N=${N:-20}
REPS=${REPS:-5}
RUNS=${RUNS:-time mem}
LAB=${LAB:-persist}
WORK=$(mktemp -d /var/tmp/drover-persist.XXXXXX)
export XDG_RUNTIME_DIR=$WORK/rt
mkdir -m 700 "$XDG_RUNTIME_DIR"
cleanup() {
    for p in "$XDG_RUNTIME_DIR"/drover/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    "$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true
}
trap cleanup EXIT
log() { echo "[persist] $*" >&2; }

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
cp "$d/drover.toml" "$d/drover.toml.off"

if [[ " $RUNS " == *" time "* || " $RUNS " == *" mem "* ]]; then
    log "fresh lab of $N hosts ($LAB)"
    "$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true
    "$DROVER" lab up "$N" --lab $LAB >/dev/null
    "$DROVER" lab inventory --lab $LAB > "$d/inventory.toml"
    sleep 2
    "$DROVER" -C "$d" apply --json > "$WORK/first.json" 2>"$WORK/first.log"
fi

persist() { # on|off
    cp "$d/drover.toml.off" "$d/drover.toml"
    [ "$1" = on ] && printf '\n[ssh]\npersist = "10m"\n' >> "$d/drover.toml"
    true
}

# One timed apply; its report in $WORK/$1.json, its timing in $1.measure.json.
run() {
    python3 "$REPO/bench/measure.py" "$WORK/$1.measure.json" -- \
        bash -c 'exec "$0" -C "$1" apply --json > "$2"' "$DROVER" "$d" "$WORK/$1.json" 2>"$WORK/$1.log" \
        || { log "$1 failed; see $WORK/$1.log"; tail -5 "$WORK/$1.log" >&2; }
}

# Median wall and per-phase medians over the runs named $@.
summary() {
    python3 - "$WORK" "$@" <<'PY'
import json, statistics, sys
work, label, names = sys.argv[1], sys.argv[2], sys.argv[3:]
walls = [json.load(open(f"{work}/{n}.measure.json"))["wall_s"] for n in names]
phases = ["connect", "hello", "diff", "send", "activate", "restart", "health", "confirm"]
per = {p: [] for p in phases}
vias, outcomes = set(), set()
for n in names:
    for h in json.load(open(f"{work}/{n}.json"))["hosts"]:
        vias.add(h.get("via", "?")); outcomes.add(h["outcome"])
        for p in phases:
            per[p].append(h["phases"][p + "_ms"])
med = " ".join(f"{p}={statistics.median(v):.1f}" for p, v in per.items())
print(f"{label:13} wall median {statistics.median(walls) * 1000:7.1f} ms (min {min(walls) * 1000:.1f}, max {max(walls) * 1000:.1f}, {len(walls)} runs)  "
      f"via {','.join(sorted(vias))}  {','.join(sorted(outcomes))}")
print(f"{'':13} host medians (ms): {med}")
PY
}

change() { echo "# changed $(date +%s.%N)" >> "$d/layers/bench/etc/bench/small/f01.conf"; }

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
anon_kb() { awk '/^Anonymous:/ { print $2 }' "/proc/$1/smaps_rollup"; }
# Where it is: file-backed (the binary's pages), anonymous (heap), mlocked
# (russh keeps key material and packet buffers in mlocked pages).
rollup() { awk '/^(Rss|Anonymous|Locked):/ { printf "%s %s KiB  ", $1, $2 }' "/proc/$1/smaps_rollup"; echo; }
resident_pid() { cat "$XDG_RUNTIME_DIR"/drover/*.pid; }

{
    echo "drover $("$DROVER" --version | awk '{ print $2 }') ($DROVER), $N $([ "$RUNS" = table ] && echo "inventory hosts (no lab)" || echo "lab hosts"), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ " $RUNS " == *" time "* ]]; then
        for mode in off on; do
            persist $mode
            label=$([ $mode = on ] && echo warm || echo cold)
            if [ $mode = on ]; then
                # The first command starts the resident and goes direct while
                # it logs in in the background: warm up until every host
                # goes through it (not counted).
                for i in $(seq 20); do
                    run start
                    python3 -c 'import json,sys; sys.exit(any(h.get("via") != "resident" for h in json.load(open(sys.argv[1]))["hosts"]))' "$WORK/start.json" && break
                    sleep 0.2
                done
            fi
            names=(); for i in $(seq "$REPS"); do run "$label-noop-$i"; names+=("$label-noop-$i"); done
            summary "$label no-op" "${names[@]}"
            names=(); for i in $(seq "$REPS"); do change; run "$label-change-$i"; names+=("$label-change-$i"); done
            summary "$label change" "${names[@]}"
        done
    fi
    if [[ " $RUNS " == *" mem "* ]]; then
        persist on
        for p in "$XDG_RUNTIME_DIR"/drover/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
        sleep 0.5
        # Each `exec` twice: the first logs the resident in (in the
        # background), the second goes through it. Read once the resident
        # is idle: it trims its heap within 5 s of its last client.
        for i in 1 2; do "$DROVER" -C "$d" exec h1 -- true >/dev/null 2>&1; sleep 1; done
        sleep 5
        pid=$(resident_pid); one=$(rss_kb "$pid"); one_anon=$(anon_kb "$pid")
        echo "resident holding 1 host: $(rollup "$pid")"
        for i in 1 2; do "$DROVER" -C "$d" exec all -- true >/dev/null 2>&1; sleep 1; done
        sleep 5
        all=$(rss_kb "$pid"); all_anon=$(anon_kb "$pid")
        echo "resident holding $N hosts: $(rollup "$pid")"
        echo "resident RSS: holding 1 host ${one} KiB, holding all $N hosts ${all} KiB: $(( (all - one) / (N - 1) )) KiB per further held host (anonymous: $(( (all_anon - one_anon) / (N - 1) )) KiB)"
    fi
    if [[ " $RUNS " == *" table "* ]]; then
        # shellcheck source=bench/lib.sh
        source "$REPO/bench/lib.sh"
        for n in 1 "$N"; do
            t=$WORK/table-$n
            sim_project "$t" "$n"
            sed -i 's/^\[apply\]$/[apply]\nconnect-timeout = "1s"/' "$t/drover.toml"
            printf '\n[ssh]\npersist = "10m"\n' >> "$t/drover.toml"
            "$DROVER" -C "$t" exec s1 -- true >/dev/null 2>&1 || true
            sleep 6
            pid=$(cat "$XDG_RUNTIME_DIR"/drover/*.pid)
            eval "rss_$([ "$n" = 1 ] && echo one || echo all)=$(rss_kb "$pid")"
            echo "resident for $n hosts, none held: $(rollup "$pid")"
            kill "$pid"; sleep 0.5; rm -f "$XDG_RUNTIME_DIR"/drover/*
        done
        echo "resident table: $(( (rss_all - rss_one) * 1024 / (N - 1) )) bytes per host in the inventory (no session)"
    fi
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "raw: $WORK"
} | tee ${OUT:+"$OUT"}
