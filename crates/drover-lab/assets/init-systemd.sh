#!/bin/sh
# pid 1 of a drover lab host with systemd (installed as
# /usr/local/sbin/drover-lab-init), until it execs systemd.
#
# Started by the controller chrooted into the host's overlay, inside the
# host's network namespace and in fresh pid, mount, uts, ipc and cgroup
# namespaces, already a member of the host's own cgroup (which the cgroup
# namespace shows as the root). It prepares what systemd expects of a
# container (as systemd-nspawn would): /proc, a read-only /sys, a small
# /dev, /run, and a writable cgroup tree of the layout named by
# DROVER_LAB_CGROUP (legacy, hybrid or unified). `container` in the
# environment tells systemd it runs in a container.
set -eu
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
case "${DROVER_LAB_CGROUP:-}" in
  legacy|hybrid)
    mount -t tmpfs -o mode=755,size=1m,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
    mkdir /sys/fs/cgroup/systemd
    mount -t cgroup -o nosuid,nodev,noexec,none,name=systemd cgroup /sys/fs/cgroup/systemd
    if [ "$DROVER_LAB_CGROUP" = hybrid ]; then
      mkdir /sys/fs/cgroup/unified
      mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup/unified
    fi
    mount -o remount,ro,bind,nosuid,nodev,noexec /sys/fs/cgroup
    ;;
  unified)
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
    ;;
  *)
    echo "drover-lab-init: DROVER_LAB_CGROUP must be legacy, hybrid or unified" >&2
    exit 1
    ;;
esac
mount -t tmpfs -o mode=755,size=1m,nosuid tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir -m 755 /dev/pts
mkdir -m 1777 /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=755,size=64m,nosuid,nodev tmpfs /run
hostname -F /etc/hostname
exec /lib/systemd/systemd
