#!/bin/sh
# pid 1 of a drover lab host with OpenRC (installed as
# /usr/local/sbin/drover-lab-init), until it execs openrc-init.
#
# Started by the controller chrooted into the host's overlay, inside the
# host's network namespace and in fresh pid, mount, uts and ipc namespaces.
# Mounts the file systems a kernel and an initramfs would have mounted
# (OpenRC's sysinit finds /proc and /run there and leaves them), then hands
# over to Debian's openrc-init, which runs the sysinit, boot and default
# runlevels, reaps orphans, and on `openrc-shutdown -r` runs the reboot
# runlevel and calls reboot(2): in a pid namespace that ends this host's
# init, and the boot loop starts it again.
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
hostname -F /etc/hostname
exec /sbin/openrc-init
