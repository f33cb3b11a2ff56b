#!/usr/bin/env bash
# Jump host benchmark (docs/benchmarks.md, "Jump hosts").
#
# N lab hosts behind one bastion (`lab up N --bastion`): the no-op apply
# (every host already converged) through the bastion, against the same
# no-op direct to the same hosts. "Direct" runs the same binary inside the
# bastion's network namespace (`ip netns exec`), where the hosts are on-link,
# with the inventory's proxy-jump removed: same machine, same hosts, same
# project, only the path differs. It also counts the bastion's logins per
# run from its sshd log (one "Accepted publickey" line per login).
#
#   sudo bench/jump.sh                 # N=100 RUNS=5, release build
#   sudo N=20 RUNS=3 bench/jump.sh
set -euo pipefail

DROVER=${DROVER:-$PWD/target/release/drover}
N=${N:-100}
RUNS=${RUNS:-5}
PARALLEL=${PARALLEL:-$N}
LAB=${LAB:-jump-bench}

work=$(mktemp -d /tmp/jump-bench.XXXXXX)
trap '"$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

"$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true
"$DROVER" lab up "$N" --bastion --lab "$LAB" >/dev/null
cd "$work"
"$DROVER" init p >/dev/null
"$DROVER" lab inventory --lab "$LAB" > p/inventory.toml
"$DROVER" -C p trust >/dev/null
grep -v '^proxy-jump' p/inventory.toml > "$work/direct.toml"
state=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["index"])' "${DROVER_LAB_DIR:-/var/lib/drover-lab}/$LAB/state.json")
ns="dl${state}h0"
log="${DROVER_LAB_DIR:-/var/lib/drover-lab}/$LAB/hosts/h0/console.log"
logins() { grep -c 'Accepted publickey for' "$log" || true; }

echo "mode run seconds bastion_logins unchanged" > "$work/raw.txt"
# Converge once (through the bastion: the agent pushed to every host, the
# first generation applied and confirmed), so every timed run is a no-op.
before=$(logins)
start=$(date +%s.%N)
"$DROVER" -C p apply --json --parallel "$PARALLEL" > "$work/converge.json"
end=$(date +%s.%N)
changed=$(python3 -c 'import json,sys; print(sum(h["outcome"]=="changed" for h in json.load(open(sys.argv[1]))["hosts"]))' "$work/converge.json")
printf 'converge-bastion 1 %.2f %s %s\n' "$(echo "$end - $start" | bc)" "$(($(logins) - before))" "0/changed=$changed" >> "$work/raw.txt"
for run in $(seq 1 "$RUNS"); do
    for mode in bastion direct; do
        if [ "$mode" = direct ]; then
            cp "$work/direct.toml" p/inventory.toml.direct
            mv p/inventory.toml p/inventory.toml.bastion
            mv p/inventory.toml.direct p/inventory.toml
            wrap=(ip netns exec "$ns")
        else
            wrap=()
        fi
        before=$(logins)
        start=$(date +%s.%N)
        "${wrap[@]}" "$DROVER" -C p apply --json --parallel "$PARALLEL" > "$work/$mode-$run.json"
        end=$(date +%s.%N)
        after=$(logins)
        unchanged=$(python3 -c 'import json,sys; print(sum(h["outcome"]=="unchanged" for h in json.load(open(sys.argv[1]))["hosts"]))' "$work/$mode-$run.json")
        printf '%s %s %.2f %s %s\n' "$mode" "$run" "$(echo "$end - $start" | bc)" "$((after - before))" "$unchanged" >> "$work/raw.txt"
        if [ "$mode" = direct ]; then
            mv p/inventory.toml.bastion p/inventory.toml
        fi
    done
done

cat "$work/raw.txt"
echo
python3 - "$work/raw.txt" "$N" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
conv = [r for r in rows if r[0] == "converge-bastion"]
rows = [r for r in rows if r[0] != "converge-bastion"]
n = sys.argv[2]
print(f"| path ({n} hosts, no-op) | median s | min s | max s | bastion logins per run | hosts unchanged |")
print("|---|---|---|---|---|---|")
for mode in ("direct", "bastion"):
    t = [float(r[2]) for r in rows if r[0] == mode]
    l = sorted({r[3] for r in rows if r[0] == mode})
    u = sorted({r[4] for r in rows if r[0] == mode})
    print(f"| {mode} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} | {', '.join(l)} | {', '.join(u)} |")
for r in conv:
    print(f"\nfirst converge through the bastion ({n} hosts, {r[4].split('=')[1]} changed): {r[2]} s, {r[3]} bastion login(s)")
PY
