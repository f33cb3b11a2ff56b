#!/bin/sh
# runit service: OpenSSH in the foreground, logging to the host console.
exec 2>&1
exec /usr/sbin/sshd -D -e
