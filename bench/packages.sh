#!/usr/bin/env bash
# Package install benchmark (docs/benchmarks.md, "Packages").
#
# Time for `drover apply` to install nginx + keepalived (with their locked
# dependency closure, from the project's cache) on N fresh lab hosts, which
# have no route to any mirror: direct (every .deb from the controller) and
# with `--relay` (hosts pass blobs to each other; RELAY_MIN_MIB, default 1,
# since .deb files are small). The lock is made once, before timing.
#
#   sudo bench/packages.sh                 # N=20
#   sudo N=5 RUNS=direct bench/packages.sh
set -euo pipefail

DROVER=${DROVER:-$PWD/target/release/drover}
N=${N:-20}
LAB=${LAB:-pkg-bench}
RUNS=${RUNS:-"direct relay"}
RELAY_MIN_MIB=${RELAY_MIN_MIB:-1}

work=$(mktemp -d /tmp/pkg-bench.XXXXXX)
trap '"$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

fresh_lab() {
    "$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true
    "$DROVER" lab up "$N" --lab "$LAB" >/dev/null
    "$DROVER" lab inventory --lab "$LAB" > "$work/p/inventory.toml"
}

cd "$work"
"$DROVER" init p >/dev/null
sed -i '1i packages = ["nginx", "keepalived"]' p/roles/site.toml
fresh_lab
"$DROVER" -C p packages lock > "$work/lock.txt"; head -1 "$work/lock.txt"

for mode in $RUNS; do
    [ "$mode" = relay ] && extra=(--relay --relay-min-mib "$RELAY_MIN_MIB") || extra=()
    fresh_lab
    start=$(date +%s.%N)
    "$DROVER" -C p apply --json "${extra[@]}" > "$work/$mode.json"
    end=$(date +%s.%N)
    python3 - "$work/$mode.json" "$mode" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
hosts = r["hosts"]
bad = [h["host"] for h in hosts if h["outcome"] != "changed"]
sent = sum(h["bytes_sent"] for h in hosts)
print(f"{sys.argv[2]}: {len(hosts)} hosts in {float(sys.argv[4]) - float(sys.argv[3]):.1f} s, "
      f"controller sent {sent / 2**20:.1f} MiB, not changed: {bad or 'none'}")
PY
    # Every host has both daemons' packages installed.
    for i in $(seq 1 "$N"); do
        out=$("$DROVER" -C p exec "h$i" -- "dpkg-query -W -f='\${Status}\n' nginx keepalived" | tail -n +2)
        [ "$(echo "$out" | grep -c 'install ok installed')" = 2 ] || { echo "h$i: $out" >&2; exit 1; }
    done
    # A second apply is a no-op: no dpkg, nothing sent.
    start=$(date +%s.%N)
    "$DROVER" -C p apply --json > "$work/$mode-noop.json"
    end=$(date +%s.%N)
    python3 -c "import sys; print(f'  no-op apply after it: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$start" "$end"
done
