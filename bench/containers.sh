#!/usr/bin/env bash
# Bytes per image upgrade (#29 "Done when"): the same two versions of an
# image, pushed to one throwaway registry (Debian's docker-registry on the
# controller's lab-bridge address), shipped to a container-capable lab host
# by drover (`apply --json` bytes_sent: the flattened image as
# content-addressed files) and pulled by `docker pull` on that host (a
# dockerd started there, --insecure-registry; bytes counted on the host's
# interfaces around each pull). Never runs dockerd on the controller.
#
# Two image families:
#   busybox  the test images (busybox-static base; v2 changes one 15-byte
#            page in the app layer);
#   debian   the lab's cached debootstrap bookworm base as one layer, and an
#            app layer with a C server (gcc) and 2 MiB of assets; v2 is the
#            server rebuilt after a one-line change (its version string).
#
# Usage:  sudo bench/containers.sh      (root: lab hosts; a few minutes)
#   BENCH_OUT=FILE   the raw output (default bench/results/containers-<UTC date>.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-bench/results/containers-$(date -u +%Y%m%d).txt}
export DROVER_AGENTS_DIR=${DROVER_AGENTS_DIR:-$PWD/target/cross-agents}
{
    echo "# bench/containers.sh, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
    echo "# bytes; drover: apply --json bytes_sent; docker pull: host rx bytes during the pull"
    cargo test -q -p drover --features drover/agent-test-hooks,drover-agent/test-hooks --test it -- \
        lab_containers::pull_bytes::bytes_per_image_upgrade_drover_vs_docker_pull --exact --ignored --nocapture 2>&1 |
        grep '^|'
} | tee "$OUT"
