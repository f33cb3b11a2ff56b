#!/bin/sh
# Turn a Debian lab base into a busybox-only userland (Alpine's minimal
# one): run chrooted into the base once, when it is built. bash, dash and
# the GNU core utilities are purged; /bin/sh is busybox ash and every
# busybox applet whose command is now missing is a link to busybox. sshd,
# libc, the init, sudo, iproute2 and python3 stay Debian's, and so does GNU
# tar: dpkg pre-depends on it and dpkg-deb runs it to unpack every package
# (busybox tar lacks the options it passes), so a busybox host that has
# dpkg at all has it.
set -eu
export DEBIAN_FRONTEND=noninteractive
# Applets for the maintainer scripts and triggers that run while the
# programs they call are being removed (last in PATH: the real ones win
# while they exist).
mkdir /tmp/busybox
/bin/busybox --install -s /tmp/busybox
export PATH="$PATH:/tmp/busybox"
force="--force-remove-essential --force-depends"
dpkg --purge $force bash coreutils diffutils findutils grep gzip sed
# dash last, alone: its postrm (it only updates menus) would run with
# /bin/sh already gone, and triggers wait until /bin/sh is busybox.
rm /var/lib/dpkg/info/dash.postrm
dpkg --purge $force --no-triggers dash
/bin/busybox ln -s busybox /bin/sh
dpkg --configure --pending
/bin/busybox --install -s
/bin/busybox rm -rf /tmp/busybox
# Logins get busybox ash (root's shell was bash).
sed -i 's#:/bin/bash$#:/bin/sh#' /etc/passwd
sed -i '/bash$/d' /etc/shells
# What a host can check it is: the lab's own marker.
echo busybox > /etc/drover-lab-userland
