#!/usr/bin/env bash
# Peer relay benchmark (docs/benchmarks.md, "Bundles and peer relay").
#
# Time to deliver a SIZE_MIB artifact to N lab hosts from a signed bundle,
# with the controller's link rate-limited to RATE, without and with
# `--relay`. Each run starts from fresh hosts (the lab is recreated).
#
# The limit is a tbf qdisc on the lab bridge's own egress: it shapes what the
# controller (the root namespace) sends to hosts; host-to-host traffic is
# forwarded between bridge ports and never passes that qdisc. All traffic
# stays inside the lab's namespaces and bridge. The apply runs with the
# project directory as -C only for its inventory (recreated hosts have new
# host keys); manifests and blobs come from the bundle.
#
#   sudo bench/bundle-relay.sh                       # N=50 SIZE_MIB=200 RATE=100mbit
#   sudo N=10 SIZE_MIB=50 RUNS=relay bench/bundle-relay.sh
set -euo pipefail

DROVER=${DROVER:-$PWD/target/release/drover}
N=${N:-50}
SIZE_MIB=${SIZE_MIB:-200}
RATE=${RATE:-100mbit}
LAB=${LAB:-bundle-bench}
RUNS=${RUNS:-"relay direct"}

work=$(mktemp -d /tmp/bundle-bench.XXXXXX)
trap '"$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

bridge() {
    for l in /sys/class/net/*; do
        if [ "$(cat "$l/ifalias" 2>/dev/null)" = "drover-lab:$LAB" ]; then basename "$l"; return; fi
    done
    echo "no bridge for lab $LAB" >&2
    exit 1
}

fresh_lab() {
    "$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true
    "$DROVER" lab up "$N" --lab "$LAB" >/dev/null
    "$DROVER" lab inventory --lab "$LAB" > "$work/p/inventory.toml"
    tc qdisc replace dev "$(bridge)" root tbf rate "$RATE" burst 256kb latency 500ms
}

cd "$work"
"$DROVER" init p >/dev/null
mkdir -p p/layers/site/opt/bench
head -c "${SIZE_MIB}M" /dev/urandom > p/layers/site/opt/bench/artifact.bin
"$DROVER" bundle keygen --key "$work/ops.key" --pub "$work/ops.pub" >/dev/null
fresh_lab
"$DROVER" -C p bundle build -o "$work/site.drv"
"$DROVER" bundle sign "$work/site.drv" --key "$work/ops.key"


for mode in $RUNS; do
    [ "$mode" = relay ] && extra=(--relay) || extra=()
    fresh_lab
    start=$(date +%s.%N)
    "$DROVER" -C p apply --json --bundle "$work/site.drv" --pubkey "$work/ops.pub" "${extra[@]}" > "$work/$mode.json"
    end=$(date +%s.%N)
    python3 - "$work/$mode.json" "$mode" "$start" "$end" "$work/p/layers/site/opt/bench/artifact.bin" "$LAB" <<'PY'
import json, sys, hashlib, glob
report, mode, start, end, artifact, lab = sys.argv[1:]
r = json.load(open(report))
hosts = r["hosts"]
changed = sum(h["outcome"] == "changed" for h in hosts)
sent = sum(h["bytes_sent"] for h in hosts)
want = hashlib.sha256(open(artifact, "rb").read()).hexdigest()
roots = glob.glob(f"/var/lib/drover-lab/{lab}/hosts/h*/merged/opt/bench/artifact.bin")
same = sum(hashlib.sha256(open(p, "rb").read()).hexdigest() == want for p in roots)
print(f"{mode:6} {float(end) - float(start):7.1f} s  {changed}/{len(hosts)} changed  "
      f"controller sent {sent / 2**20:8.1f} MiB  artifact identical on {same} hosts")
PY
done
