#!/usr/bin/env bash
# musl or glibc: is the smaller static agent slower? (#30: "the smaller
# binary wins over the glibc one unless a measured reason says otherwise").
# The same debug-free controller built twice: one carrying the musl x86_64
# agent (DROVER_AGENTS_DIR set: the smallest per machine wins), one with
# only the native glibc static agent. On a fresh lab per run (the agent
# pushed, no blobs): the first apply of a 2,000-file, ~60 MiB tree (send:
# zstd decode + blake3 + write; activate: staging and swap), then a no-op
# apply after every file's mtime was touched on the hosts (diff: the agent
# re-hashes all 60 MiB with blake3). Runs alternate musl, glibc, ... so the
# machine's load falls on both alike.
#
# Usage (root):  MUSL=/tmp/drover-musl GLIBC=/tmp/drover-glibc bench/agent-libc.sh
#                N=3 RUNS=3 OUT=bench/results/agent-libc-x.txt ...
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/agent-libc.sh needs root" >&2; exit 3; }
cd "$(dirname "$0")/.."
MUSL=$(realpath "${MUSL:?a drover built with DROVER_AGENTS_DIR}")
GLIBC=$(realpath "${GLIBC:?a drover built without it}")
N=${N:-3}
RUNS=${RUNS:-3}
OUT=${OUT:-bench/results/agent-libc-$(date -u +%Y%m%d).txt}
WORK=$(mktemp -d /var/tmp/drover-libc.XXXXXX)
trap '"$GLIBC" lab down --lab libc >/dev/null 2>&1 || true' EXIT

"$GLIBC" init "$WORK/proj" >/dev/null
python3 - "$WORK/proj/layers/site/opt/data" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(30)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(500)]
for i in range(2000):
    d = os.path.join(root, f"d{i % 40}")
    os.makedirs(d, exist_ok=True)
    size = rnd.choice([2_000, 8_000, 30_000, 60_000])
    if i % 2:
        data = rnd.randbytes(size)
    else:
        data = b" ".join(rnd.choice(words) for _ in range(size // 6))[:size]
    open(os.path.join(d, f"f{i}.bin"), "wb").write(data)
PY
du -sb "$WORK/proj/layers/site/opt/data" | cut -f1 > "$WORK/bytes"

row() { # variant run first.json noop.json agent-bytes
    python3 - "$@" <<'PY'
import json, statistics, sys
v, run, first, noop, size = sys.argv[1:]
f = json.load(open(first)); n = json.load(open(noop))
assert all(h["outcome"] == "changed" for h in f["hosts"]), f
assert all(h["outcome"] == "unchanged" for h in n["hosts"]), n
med = lambda r, k: statistics.median(h["phases"][k] for h in r["hosts"])
print(f"| {v:<5} | {run} | {size:>9} | {f['duration_ms']:>8} | {med(f, 'send_ms'):>7.0f} | {med(f, 'activate_ms'):>8.0f} "
      f"| {n['duration_ms']:>8} | {med(n, 'diff_ms'):>7.0f} |")
PY
}

{
    echo "# bench/agent-libc.sh, $(date -u +%FT%TZ), N=$N hosts, RUNS=$RUNS, $(nproc) cores, tree $(cat "$WORK/bytes") bytes in 2000 files"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "| agent | run | agent B   | first ms | send ms | activate | no-op ms | diff ms |"
    echo "|-------|-----|-----------|----------|---------|----------|----------|---------|"
} | tee "$OUT"
for run in $(seq 1 "$RUNS"); do
    for v in musl glibc; do
        bin=$MUSL; [ $v = glibc ] && bin=$GLIBC
        "$bin" lab down --lab libc >/dev/null 2>&1 || true
        "$bin" lab up "$N" --lab libc >/dev/null 2>&1
        "$bin" lab inventory --lab libc >"$WORK/proj/inventory.toml"
        rm -rf "$WORK/proj/.drover"
        (cd "$WORK/proj" && "$bin" apply --json >"$WORK/$v-$run-first.json" 2>/dev/null)
        (cd "$WORK/proj" && "$bin" exec all -- 'find /opt/data -type f -exec touch {} +' >/dev/null)
        (cd "$WORK/proj" && "$bin" apply --json >"$WORK/$v-$run-noop.json" 2>/dev/null)
        size=$(cd "$WORK/proj" && "$bin" exec h1 -- 'stat -c %s /var/lib/drover/agent/agent-*' | tail -1)
        row "$v" "$run" "$WORK/$v-$run-first.json" "$WORK/$v-$run-noop.json" "$size" | tee -a "$OUT"
    done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw reports in ${OUT%.txt}/" | tee -a "$OUT"
mkdir -p "${OUT%.txt}"; cp "$WORK"/*.json "${OUT%.txt}/"
