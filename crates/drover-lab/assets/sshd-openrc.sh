#!/sbin/openrc-run
# drover lab: OpenSSH as an OpenRC service (Alpine's name and idiom;
# Debian's own /etc/init.d/ssh, an LSB script that also provides `sshd`,
# is removed from the base), in the foreground under supervise-daemon, which starts it
# again a second after it dies. Its log goes to /run (gone at reboot), so
# an idle host writes nothing to its overlay.
description="OpenSSH server (drover lab)"
supervisor=supervise-daemon
command=/usr/sbin/sshd
command_args="-D -e"
error_log=/run/sshd.log
respawn_delay=1
respawn_max=0

start_pre() {
	checkpath -d -m 0755 /run/sshd
}
