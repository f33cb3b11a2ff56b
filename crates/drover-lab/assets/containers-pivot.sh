# Run by the controller's `sh` in a container host's fresh namespaces (the
# last step of its boot, instead of `chroot`): make the host's root the root
# of its mount namespace with pivot_root, detach the controller's tree, then
# exec the host's init. Under chroot the kernel refuses user namespaces
# (unshare --user fails with EPERM) and runtimes that pivot_root into their
# own rootfs see a tree that is not theirs; after pivot_root the host's
# mount namespace holds its own tree only. The old root goes to /mnt (empty
# in every base) and is unmounted lazily with the host's busybox: util-linux
# umount needs a /proc that is not mounted yet.
set -eu
cd "$1"
pivot_root . mnt
busybox umount -l /mnt
exec "$2"
