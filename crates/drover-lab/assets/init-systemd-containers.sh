#!/bin/sh
# pid 1 of a systemd *container* host (written by `drover lab up` as
# /usr/local/sbin/drover-lab-init-containers), until it execs systemd.
#
# What drover-lab-init does for systemd hosts (see init-systemd.sh), except
# that the cgroup tree is the host's whole part of every hierarchy,
# controllers included (mounted by drover-lab-cgroups): systemd finds them
# at start and manages them, so `MemoryMax=`, `TasksMax=` and the like
# work on this host, and runc and dockerd create their containers' cgroups
# below the host's own. Run after pivot_root into the host's root, in its
# fresh pid, mount, uts, ipc and cgroup namespaces.
set -eu
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
/usr/local/sbin/drover-lab-cgroups
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
