#!/usr/bin/env bash
# 10,000 simulated hosts from one controller: first apply, no-op apply and a
# one-file change, timed, with the controller's peak RSS.
#
# Usage:  bench/sim-scale.sh                       # builds target/release/drover
#         DROVER=/path/to/drover HOSTS=1000 bench/sim-scale.sh
#         SIM_FLAGS="--sim-latency 20ms --sim-bandwidth 10mbit --sim-failure-rate 0.01" bench/sim-scale.sh
#         FLEET=1 bench/sim-scale.sh               # plus a template reading `fleet` (issue 12)
#
# Hosts are in-process agents (`--simulate DIR`, see crates/drover/src/sim.rs),
# each with its own root directory under a temporary DIR, created by the first
# apply. The project is the quickstart (`drover init`: two files, one template,
# one service) with a generated inventory. Needs no root and no lab.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
DROVER=$(realpath "$DROVER")
HOSTS="${HOSTS:-10000}"
read -r -a FLAGS <<< "${SIM_FLAGS:-}"
WORK=$(mktemp -d /var/tmp/drover-sim.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$DROVER" init "$WORK/project" >/dev/null
python3 - "$HOSTS" > "$WORK/project/inventory.toml" <<'EOF'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f'[hosts.s{i}]\naddress = "10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"\n')
EOF
if [ -n "${FLEET:-}" ]; then
    # Reads the whole fleet on every host (its size, the first five hosts):
    # small output, so the figure is the cost of `fleet`, not of disk writes.
    cat > "$WORK/project/layers/site/etc/fleet.conf.j2" <<'EOF'
hosts {{ fleet.hosts | length }}, site role {{ fleet.roles.site | length }}
{% for h in fleet.hosts[:5] %}seed {{ h.name }} {{ h.address }}:{{ h.port }}
{% endfor %}
EOF
fi

run() { # label
    local out=$WORK/time.txt
    /usr/bin/time -f "%e %M" -o "$out" "$DROVER" -C "$WORK/project" apply --simulate "$WORK/hosts" "${FLAGS[@]}" \
        > "$WORK/last.txt" 2>&1 || { tail -5 "$WORK/last.txt" >&2; exit 1; }
    read -r wall rss < "$out"
    echo "| $1 | $wall s | $((rss / 1024)) MiB | $((rss / HOSTS)) KiB | $(tail -1 "$WORK/last.txt") |"
}

echo "Machine: $(nproc) cores, kernel $(uname -r); $HOSTS simulated hosts ${SIM_FLAGS:+($SIM_FLAGS)}${FLEET:+, with a fleet template}"
echo
echo "| run | wall | peak RSS | RSS / host | summary |"
echo "|---|---|---|---|---|"
run "first apply"
for i in 1 2 3; do run "no-op apply ($i)"; done
echo "# changed" >> "$WORK/project/layers/site/etc/motd"
run "one file changed"
