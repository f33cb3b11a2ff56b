#!/bin/sh
# Mount this container host's cgroup hierarchies (installed by `drover lab
# up` as /usr/local/sbin/drover-lab-cgroups on container hosts only; run at
# boot by the runit stage-1 hook or the systemd unit drover-lab-cgroups).
#
# The host's processes are in their own cgroup in every hierarchy of the
# controller, and in a cgroup namespace whose root is that cgroup, so each
# hierarchy mounted here shows the host's part of the tree only. runc and
# dockerd find them where they look (/sys/fs/cgroup/<controller>) and create
# their containers' cgroups below. One hierarchy per line of
# /proc/self/cgroup, named as the controller mounts them: `cpu`,
# `memory`, ..., `systemd` for name=systemd, `unified` for cgroup2 beside
# v1 ones; cgroup2 alone is mounted at /sys/fs/cgroup itself.
set -eu
cg=/sys/fs/cgroup
if [ "$(cat /proc/self/cgroup)" = "0::/" ]; then
  mountpoint -q "$cg" || mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$cg"
  exit 0
fi
if mountpoint -q "$cg"; then
  # systemd hosts: drover-lab-init mounted it, systemd remounted it
  # read-only (the mount and its tmpfs): both become writable again.
  mount -o remount,rw "$cg"
  mount -o remount,rw,bind "$cg"
else
  mount -t tmpfs -o mode=755,size=1m,nosuid,nodev,noexec tmpfs "$cg"
fi
while IFS=: read -r _ controllers _; do
  case "$controllers" in
    "") dir=unified type=cgroup2 opts= ;;
    name=systemd) dir=systemd type=cgroup opts=,none,name=systemd ;;
    name=*) dir=${controllers#name=} type=cgroup opts=,none,$controllers ;;
    *) dir=$controllers type=cgroup opts=,$controllers ;;
  esac
  mountpoint -q "$cg/$dir" && continue
  mkdir -p "$cg/$dir"
  mount -t "$type" -o "nosuid,nodev,noexec$opts" cgroup "$cg/$dir"
  # Co-mounted controllers (cpu,cpuacct) are also reached by each name.
  case "$dir" in
    *,*) for c in $(echo "$dir" | tr , ' '); do [ -e "$cg/$c" ] || ln -s "$dir" "$cg/$c"; done ;;
  esac
done </proc/self/cgroup
mount -o remount,ro,bind "$cg"
