#!/usr/bin/env bash
# Time `drover lab up` for 20 and 100 hosts and measure what a host costs.
#
# Usage (root):  bench/lab-up.sh            # builds target/release/drover first
#                DROVER=/path/to/drover bench/lab-up.sh
#                BENCH_SIZES="20 100" BENCH_SKIP_BASE=1 bench/lab-up.sh
#
# Prints a markdown table on stdout (progress on stderr). Each size gets a
# fresh lab (`bench-<N>`), brought up with the base root filesystem already
# cached, measured, and removed. The one-time base build is timed separately
# in a throw-away cache directory (skip with BENCH_SKIP_BASE=1).
#
# Memory per host: RSS and PSS summed over every process in the host's
# network namespace (sshd, runsv, runsvdir, and the `unshare` that holds the
# namespaces), averaged. PSS is the honest figure: every host maps the same
# base files, so shared pages are split between them. (MemAvailable deltas
# were tried and are noise on a busy machine.) Disk per host: the overlay
# upper directory (`du`), i.e. everything the host wrote.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench/lab-up.sh needs root (it creates namespaces and mounts)" >&2; exit 3; }
cd "$(dirname "$0")/.."
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
SIZES="${BENCH_SIZES:-20 100}"
STATE_ROOT="${DROVER_LAB_DIR:-/var/lib/drover-lab}"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Sum of one field of smaps_rollup (kB) over the processes of a namespace.
ns_sum() { # netns field
    local total=0 pid v
    for pid in $(ip netns pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

rows=()
if [ -z "${BENCH_SKIP_BASE:-}" ]; then
    cache=$(mktemp -d /var/tmp/drover-lab-bench-cache.XXXXXX)
    echo "timing the one-time base build in $cache ..." >&2
    "$DROVER" lab down --lab bench-base >/dev/null
    t0=$(now)
    DROVER_LAB_CACHE="$cache" "$DROVER" lab up 1 --lab bench-base >&2
    t1=$(now)
    "$DROVER" lab down --lab bench-base >/dev/null
    base_size=$(du -sh "$cache"/base-*/ | awk '{ print $1 }')
    rm -rf "$cache"
    base_row="| base root filesystem (debootstrap, once per machine) | $(secs "$t0" "$t1") s (incl. 1 host) | size $base_size |"
fi

for n in $SIZES; do
    lab="bench-$n"
    "$DROVER" lab down --lab "$lab" >/dev/null
    # Warm the base into the page cache so the figure is start-up, not disk.
    "$DROVER" lab up 1 --lab bench-warm >/dev/null && "$DROVER" lab down --lab bench-warm >/dev/null
    sync; sleep 1
    echo "drover lab up $n ..." >&2
    t0=$(now)
    "$DROVER" lab up "$n" --lab "$lab" >&2
    t1=$(now)
    sleep 2 # let sshd settle before measuring
    idx=$("$DROVER" lab inventory --lab "$lab" | awk -F'"' '/^address/ { split($2, o, "."); print o[3]; exit }')
    rss=0; pss=0; procs=0
    for h in $(seq 1 "$n"); do
        ns="dl${idx}h${h}"
        rss=$((rss + $(ns_sum "$ns" Rss)))
        pss=$((pss + $(ns_sum "$ns" Pss)))
        procs=$((procs + $(ip netns pids "$ns" | wc -l)))
    done
    upper_kb=$(du -sk "$STATE_ROOT/$lab"/hosts/h*/upper | awk '{ s += $1 } END { print s }')
    t2=$(now)
    "$DROVER" lab down --lab "$lab" >&2
    t3=$(now)
    rows+=("| \`drover lab up $n\` | $(secs "$t0" "$t1") s | down $(secs "$t2" "$t3") s | $((procs / n)) | $((rss / n)) kB | $((pss / n)) kB | $((upper_kb / n)) kB |")
done

echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME")."
echo
echo "| step | time | teardown | processes / host | RSS / host | PSS / host | disk (upper) / host |"
echo "|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "$r"; done
if [ -n "${base_row:-}" ]; then
    echo
    echo "| one-time step | time | result |"
    echo "|---|---|---|"
    echo "$base_row"
fi
