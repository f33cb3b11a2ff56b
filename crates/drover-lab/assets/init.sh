#!/bin/sh
# pid 1 of a drover lab host (installed as /usr/local/sbin/drover-lab-init).
#
# Started by the controller chrooted into the host's overlay, inside the
# host's network namespace and in fresh pid, mount, uts and ipc namespaces.
# Mounts made here are private to the host and vanish with it.
set -eu
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
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
mount -t tmpfs -o mode=755,size=16m,nosuid,nodev tmpfs /run
mkdir -m 755 /run/sshd
hostname -F /etc/hostname
# Stage-1 hooks, as Debian's runit runs them at a native boot (/etc/runit/1
# with /etc/runit/native.boot.run): once the file systems are there, before
# any service starts. drover's agent puts its boot-time hook here.
for f in /etc/runit/boot-run/*.sh; do
  [ -r "$f" ] || continue
  sh "$f" || echo "drover-lab-init: $f failed" >&2
done
# With a log argument, as Debian's /etc/runit/2 starts it: runsvdir then watches
# its standard error (a pipe; services keep this console on their standard
# output) and can be woken through it (the agent does, to start a new service
# without waiting for the 5-s scan).
exec runsvdir -P /etc/service 'log: ...........................................................................................................................................................................................................................................................................................................................................................................................................'
