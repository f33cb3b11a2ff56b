#!/usr/bin/env bash
# Where a held lab host's memory goes in the resident (#27 item 1): the
# resident run under heaptrack (Debian's `heaptrack`) on N lab hosts, each
# held (its SSH session and its kept agent), then killed while idle; what
# was still allocated then, by call site, for the sites allocated about
# once per host (N less a tenth, or 3, to N+1 times: a few hosts' sessions
# may be reached by a different stack), per host.
#
# Usage (root):  DROVER=target/release/drover bench/persist-heap.sh       # 20 hosts
#                N=50 OUT=bench/results/persist-heap-50.txt DROVER=... bench/persist-heap.sh
#
# A release build has no line tables, but its symbols name the functions;
# a debug build (DROVER=target/debug/drover) gives the same sites, with
# larger futures (the session task's size differs between the two).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/persist-heap.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
command -v heaptrack >/dev/null || { echo "needs heaptrack (apt-get install heaptrack)" >&2; exit 3; }
cd "$(dirname "$0")/.."
DROVER=$(realpath "${DROVER:-target/release/drover}")
N=${N:-20}
LAB=${LAB:-persist-heap}
WORK=$(mktemp -d /var/tmp/drover-persist-heap.XXXXXX)
export XDG_RUNTIME_DIR=$WORK/rt
mkdir -m 700 "$XDG_RUNTIME_DIR"
cleanup() {
    [ -n "${RPID:-}" ] && kill -9 "$RPID" 2>/dev/null || true
    "$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true
}
trap cleanup EXIT
d=$WORK/project
"$DROVER" init "$d" >/dev/null
"$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true
"$DROVER" lab up "$N" --lab "$LAB" >/dev/null
"$DROVER" lab inventory --lab "$LAB" > "$d/inventory.toml"
sleep 2
"$DROVER" -C "$d" apply >/dev/null 2>&1
printf '\n[ssh]\npersist = "10m"\n' >> "$d/drover.toml"
# The socket's name: the one a command starts a resident at.
"$DROVER" -C "$d" exec h1 -- true >/dev/null 2>&1
sock=$(ls "$XDG_RUNTIME_DIR"/drover/*.sock)
kill "$(cat "$XDG_RUNTIME_DIR"/drover/*.pid)"
sleep 1
setsid heaptrack -o "$WORK/heap" "$DROVER" -C "$d" resident --socket "$sock" --idle-ms 600000 > "$WORK/heaptrack.log" 2>&1 &
for _ in $(seq 50); do [ -f "$XDG_RUNTIME_DIR"/drover/*.pid ] 2>/dev/null && break; sleep 0.2; done
RPID=$(cat "$XDG_RUNTIME_DIR"/drover/*.pid)
# Logged in by the first, through the resident (an agent kept per host) after.
for _ in 1 2 3; do "$DROVER" -C "$d" exec all -- true >/dev/null 2>&1; sleep 1; done
"$DROVER" -C "$d" apply --json > "$WORK/apply.json" 2>/dev/null
sleep 7
{
    echo "drover $("$DROVER" --version | awk '{ print $2 }') ($DROVER), $N lab hosts held, resident under heaptrack, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "warm apply via: $(python3 -c 'import json,sys; print(sorted({h["via"] for h in json.load(open(sys.argv[1]))["hosts"]}))' "$WORK/apply.json")"
    awk '/^(Rss|Anonymous|Locked):/ { printf "%s %s KiB  ", $1, $2 }' "/proc/$RPID/smaps_rollup"; echo
    kill -9 "$RPID"; RPID=
    sleep 3
    heaptrack_print -f "$WORK"/heap.*zst --print-leaks 1 --print-peaks 0 --print-allocators 0 \
        --print-temporary 0 --print-histogram /dev/null 2>/dev/null > "$WORK/leaks.txt"
    python3 - "$WORK/leaks.txt" "$N" <<'PY'
import re, sys
lines, n = open(sys.argv[1]).read().split("\n"), int(sys.argv[2])
unit = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1 << 20}
rows, total, i = [], 0.0, 0
skip = r"^(alloc::|core::|_\$LT\$alloc|_R|std::|__rust|hashbrown|tokio::sync::mpsc::(list|chan)|tokio::runtime::task)"
while i < len(lines):
    m = re.match(r"^([0-9.]+)([KMG]?)B? leaked over (\d+) calls from:$", lines[i])
    i += 1
    if not m:
        continue
    frames = []
    while i < len(lines) and "leaked over" not in lines[i]:
        t = lines[i].strip()
        if t and not t.startswith(("at ", "in ")):
            frames.append(re.sub(r"::h[0-9a-f]{16}$", "", t))
        i += 1
    calls = int(m.group(3))
    if not n - max(3, n // 10) <= calls <= n + 1:
        continue
    kib = float(m.group(1)) * unit[m.group(2)]
    what = next((f for f in frames if not re.match(skip, f)), "?")
    owner = next((f for f in frames if re.search(r"russh::|drover", f)), "?")
    rows.append((kib / calls * 1024, calls, what[:80], owner[:90]))
    total += kib / calls
rows.sort(reverse=True)
print(f"{'bytes/host':>10} {'calls':>5}  allocated in  <-  first russh/drover frame")
for b, c, w, o in rows:
    print(f"{b:10.0f} {c:5d}  {w}  <-  {o}")
print(f"total of the per-host sites: {total:.1f} KiB per held host")
PY
    echo "raw: $WORK"
} | tee ${OUT:+"$OUT"}
