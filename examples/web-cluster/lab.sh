#!/usr/bin/env bash
# The web-cluster example on a local lab fleet, in one command (as root):
#
#   bash examples/web-cluster/lab.sh [DIR]     # default DIR: /tmp/web-cluster
#
# Copies the example to DIR (once), brings up a 6-host lab named `web` (LAB),
# writes DIR/inventory.toml from the lab's (its addresses and pinned host
# keys, the example's roles), puts the virtual IP at .10 of the lab's
# network, locks and caches the packages from this machine's apt, applies,
# and asks the virtual IP for a page. `drover lab down --lab web` ends it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DROVER=${DROVER:-drover}
LAB=${LAB:-web}
dir=${1:-/tmp/web-cluster}

[ -e "$dir/drover.toml" ] || { mkdir -p "$dir" && cp -r "$here/." "$dir/"; }
cd "$dir"
"$DROVER" lab up 6 --lab "$LAB"
"$DROVER" lab inventory --lab "$LAB" | awk '
    /^\[hosts\.h[12]\]$/ { print; print "roles = [\"balancer\"]"; next }
    /^\[hosts\./         { print; print "roles = [\"backend\"]"; next }
    { print }' > inventory.toml
net=$(sed -n 's/^address = "\([0-9]*\.[0-9]*\.[0-9]*\)\.[0-9]*"$/\1/p' inventory.toml | head -1)
vip="$net.10"
sed -i "s/^vip = .*/vip = \"$vip\"/" drover.toml
# nginx, keepalived and their dependencies, from this machine's apt, into
# .drover/packages/ and packages.lock (skipped when the lock exists: an
# existing lock is never re-resolved; the cache is refilled from it).
[ -e packages.lock ] || "$DROVER" packages lock
"$DROVER" apply
for _ in $(seq 50); do
    if page=$(curl -sf --max-time 2 -D - "http://$vip/" 2>/dev/null); then
        printf '%s\n' "$page" | grep -i '^x-balancer'
        printf '%s\n' "$page" | tail -1
        echo "the cluster answers at http://$vip/ (project: $dir)"
        exit 0
    fi
    sleep 0.2
done
echo "no answer from http://$vip/ (is curl installed?)" >&2
exit 1
