#!/usr/bin/env bash
# Simulated hosts from one controller: first apply, no-op applies and a
# one-file change, timed, with the controller's peak memory (bench/measure.py).
#
# Usage:  bench/sim-scale.sh                       # builds target/release/drover; 10,000 hosts
#         HOSTS=30000 PHASES="first noop" bench/sim-scale.sh
#         DROVER=/path/to/drover HOSTS=1000 bench/sim-scale.sh
#         SIM_FLAGS="--sim-latency 0 --sim-bandwidth 0 --sim-failure-rate 0" bench/sim-scale.sh   # ideal links
#         FLEET=1 bench/sim-scale.sh               # plus a template reading `fleet` (issue 12)
#         OUT=bench/results/x.json bench/sim-scale.sh   # also one JSON line per phase
#
# Links are `--simulate`'s defaults unless SIM_FLAGS says otherwise: 50 ms
# round trip, 100 mbit each way, 0.5 % of connections failing (retried).
# PHASES is a list of: first (the first apply: hosts created), noop (an apply
# that changes nothing), change (one file changed on every host); default
# "first noop noop noop change".
#
# Hosts are in-process agents (`--simulate DIR`, see crates/drover/src/sim/),
# each with its own root directory under a temporary DIR, created by the first
# apply. The project is the quickstart (`drover init`: two files, one template,
# one service with an HTTP health check) with a generated inventory. Needs no
# root and no lab. Memory: maxrss is the drover process, which here includes
# every in-process agent's buffers and thread stacks (an upper bound on the
# controller's own share); peak_pss sums the process tree (agents too, with
# --sim-processes).
# CPU: the drover process's (user + system), and of it the in-process
# agents' share (their threads' own CPU, which `--simulate` prints at the end:
# on a real fleet that CPU is the hosts'); the difference is the controller's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
DROVER=$(realpath "$DROVER")
HOSTS="${HOSTS:-10000}"
PHASES="${PHASES:-first noop noop noop change}"
read -r -a FLAGS <<< "${SIM_FLAGS:-}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
WORK=$(mktemp -d /var/tmp/drover-sim.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

sim_project "$WORK/project" "$HOSTS"
if [ -n "${FLEET:-}" ]; then
    # Reads the whole fleet on every host (its size, the first five hosts):
    # small output, so the figure is the cost of `fleet`, not of disk writes.
    cat > "$WORK/project/layers/site/etc/fleet.conf.j2" <<'J2'
hosts {{ fleet.hosts | length }}, site role {{ fleet.roles.site | length }}
{% for h in fleet.hosts[:5] %}seed {{ h.name }} {{ h.address }}:{{ h.port }}
{% endfor %}
J2
fi

run() { # label phase
    local m=$WORK/measure.json
    python3 bench/measure.py "$m" -- "$DROVER" -C "$WORK/project" apply --simulate "$WORK/hosts" "${FLAGS[@]}" \
        2> "$WORK/last.txt" || { tail -5 "$WORK/last.txt" >&2; exit 1; }
    read -r wall rss pss cpu < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["wall_s"], m["maxrss_kb"], m["peak_pss_kb"], round(m["cpu_user_s"] + m["cpu_sys_s"], 1))' "$m")
    local summary agents
    summary=$(grep -E '^[0-9]+ hosts:' "$WORK/last.txt" | tail -1)
    # "simulated agents: N sessions used X s of CPU (...)"
    agents=$(sed -n 's/^simulated agents: [0-9]* sessions used \([0-9.]*\) s of CPU.*/\1/p' "$WORK/last.txt" | tail -1)
    echo "| $1 | $wall s | $cpu s | ${agents:-?} s | $((rss / 1024)) MiB | $((rss / HOSTS)) KiB | $((pss / 1024)) MiB | $summary |"
    if [ -n "${OUT:-}" ]; then
        python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m.update(phase=sys.argv[2], hosts=int(sys.argv[3]), flags=sys.argv[4], summary=sys.argv[5]); print(json.dumps(m))' \
            "$m" "$2" "$HOSTS" "${SIM_FLAGS:-}" "$summary" >> "$OUT"
        [ -z "$agents" ] || python3 -c 'import json,sys; l=open(sys.argv[1]).read().splitlines(); m=json.loads(l[-1]); m["agents_cpu_s"]=float(sys.argv[2]); l[-1]=json.dumps(m); open(sys.argv[1],"w").write("\n".join(l)+"\n")' "$OUT" "$agents"
    fi
}

echo "# $(date -u +%FT%TZ) $HOSTS simulated hosts; flags: ${SIM_FLAGS:-defaults (50 ms RTT, 100 mbit, 0.5 % failures)}${FLEET:+; with a fleet template}"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | wall | CPU (drover process) | of it, agents' | peak RSS (drover process) | RSS / host | peak PSS (tree) | summary |"
echo "|---|---|---|---|---|---|---|---|"
n=0
for phase in $PHASES; do
    case $phase in
        first) run "first apply" first ;;
        noop)
            n=$((n + 1))
            run "no-op apply ($n)" noop
            ;;
        change)
            echo "# changed" >> "$WORK/project/layers/site/etc/motd"
            run "one file changed" change
            ;;
        *) echo "unknown phase $phase (first, noop, change)" >&2; exit 2 ;;
    esac
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
