#!/usr/bin/env bash
# Binary deltas (#27 item 2): bytes a changed file costs sent whole (as
# drover ships it: 1 MiB chunks, zstd level 3) vs as a delta against the
# version the host holds (drover's own encoder, crates/drover-agent/src/
# delta.rs), at drover's level and others, with the time to make and apply
# each delta and the measuring process's peak memory. Every delta is applied
# and checked against the new version.
#
# Usage:  bench/delta.sh
#   DELTA_A=/path DELTA_B=/path   the Rust binary pair, already built (else
#                                 built here: see below; about 25 minutes)
#   DELTA_LEVELS="3 9 19"         zstd levels to measure (drover uses 9)
#   BENCH_OUT=FILE                the raw results (default
#                                 bench/results/delta-<UTC date>.txt)
#
# The three artifacts:
#   rust-binary  the drover binary itself (release, ~35 MiB), built from
#                this checkout's HEAD, then again after a one-line change
#                (one error message in crates/drover/src/host/error.rs);
#   deb          Debian's git package, 1:2.39.5-0+deb12u2 and the next
#                revision 1:2.39.5-0+deb12u3 (apt-get download: both are in
#                bookworm's archives);
#   one-percent  5 MiB of random bytes, and a copy with 1 % of its bytes
#                (chosen at random, seed 27) changed.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
REPO=$PWD
LEVELS=${DELTA_LEVELS:-"3 9 19"}
OUT=${BENCH_OUT:-$REPO/bench/results/delta-$(date -u +%Y%m%d).txt}
WORK=$(mktemp -d /tmp/drover-delta-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "building the measuring tool (drover-agent's delta_bench example)" >&2
cargo build --quiet --release --locked -p drover-agent --example delta_bench
TOOL=$REPO/target/release/examples/delta_bench

if [ -z "${DELTA_A:-}" ] || [ -z "${DELTA_B:-}" ]; then
    echo "building drover twice, before and after a one-line change" >&2
    git -C "$REPO" archive HEAD | tar -x -C "$WORK" --one-top-level=src
    build() { (cd "$WORK/src" && cargo build --quiet --release --locked -p drover --bin drover --target-dir "$REPO/target/delta-bench") && cp "$REPO/target/delta-bench/release/drover" "$1"; }
    build "$WORK/drover-a"
    sed -i 's/"agent asked for unknown blob {0}"/"agent asked for an unknown blob {0}"/' "$WORK/src/crates/drover/src/host/error.rs"
    build "$WORK/drover-b"
    DELTA_A=$WORK/drover-a DELTA_B=$WORK/drover-b
    PAIR="built here from $(git -C "$REPO" rev-parse --short HEAD) and that plus the one-line change"
fi

echo "fetching git 1:2.39.5-0+deb12u2 and +deb12u3" >&2
(cd "$WORK" && apt-get download -q git=1:2.39.5-0+deb12u2 git=1:2.39.5-0+deb12u3 >/dev/null 2>&1)
DEB_A=$(ls "$WORK"/git_*deb12u2_*.deb) DEB_B=$(ls "$WORK"/git_*deb12u3_*.deb)

echo "making the 5 MiB pair" >&2
python3 - "$WORK" <<'PY'
import random, sys
r = random.Random(27)
n = 5 * 1024 * 1024
a = bytearray(r.getrandbits(8) for _ in range(n))
b = bytearray(a)
for i in r.sample(range(n), n // 100):
    b[i] = (b[i] + 1 + r.randrange(255)) % 256
open(sys.argv[1] + "/one-a.bin", "wb").write(a)
open(sys.argv[1] + "/one-b.bin", "wb").write(b)
PY

{
    echo "# bench/delta.sh $(date -u +%Y-%m-%dT%H:%MZ) drover $(git -C "$REPO" rev-parse --short HEAD) on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# rust-binary pair: ${PAIR:-DELTA_A=$DELTA_A DELTA_B=$DELTA_B}"
    printf 'artifact\told_bytes\tnew_bytes\twhole_zstd\tlevel\tdelta_bytes\tdelta_pct_of_whole\tencode_ms\tapply_ms\n'
    for pair in "rust-binary $DELTA_A $DELTA_B" "deb $DEB_A $DEB_B" "one-percent $WORK/one-a.bin $WORK/one-b.bin"; do
        set -- $pair
        # shellcheck disable=SC2086
        /usr/bin/time -f "# $1: peak memory of the measuring process %M KiB (both files, the delta and the rebuilt copy held at once)" "$TOOL" "$1" "$2" "$3" $LEVELS 2>&1
    done
} | tee "$OUT"
echo "raw results: $OUT" >&2

# With DELTA_LAB_HOSTS=N (root): the same Rust binary pair through `drover
# apply --json` to N lab hosts: the per-host bytes_sent of the release with
# the old binary, then of the one-line change (a delta against it).
if [ -n "${DELTA_LAB_HOSTS:-}" ]; then
    DROVER=${DROVER:-$REPO/target/debug/drover}
    LAB=delta-bench
    echo "lab of $DELTA_LAB_HOSTS hosts ($DROVER)" >&2
    "$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true
    "$DROVER" lab up "$DELTA_LAB_HOSTS" --lab "$LAB" >&2
    "$DROVER" init "$WORK/proj" >/dev/null
    "$DROVER" lab inventory --lab "$LAB" >"$WORK/proj/inventory.toml"
    mkdir -p "$WORK/proj/layers/site/opt/app"
    sum() { python3 -c 'import json,sys; h=json.load(sys.stdin)["hosts"]; b=[x["bytes_sent"] for x in h]; d=sum(x.get("deltas_sent",0) for x in h); print(len(h), "hosts,", sum(b), "bytes sent in all,", min(b), "to", max(b), "per host,", d, "deltas")'; }
    {
        for v in "$DELTA_A" "$DELTA_B"; do
            cp "$v" "$WORK/proj/layers/site/opt/app/drover"
            (cd "$WORK/proj" && /usr/bin/time -f "%e s" -o "$WORK/t" "$DROVER" apply --json) >"$WORK/apply.json"
            echo "# lab apply of $(basename "$v") ($(stat -c %s "$v") bytes): $(sum <"$WORK/apply.json"), $(cat "$WORK/t")"
        done
    } | tee -a "$OUT"
    "$DROVER" lab down --lab "$LAB" >&2
fi
