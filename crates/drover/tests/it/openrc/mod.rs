//! OpenRC hosts (`drover lab up --init openrc`: Debian's `openrc`, its
//! `openrc-init` as pid 1, sshd an OpenRC service under supervise-daemon),
//! the real agent and the real `drover` binary, through the scenarios the
//! runit and systemd hosts go through in `e2e.rs`, `day2.rs`,
//! `health_gate.rs`, `accounts.rs` and `reboot/`: in two tests, each on
//! one host, so that the suite pays for few lab hosts (`services`: apply,
//! restart-on-change, reload, logs, health gate, drain, magic rollback;
//! `reboot`: `lab reboot`, `apply --reboot` confirmed and rolled back).
//!
//! Needs root (the lab does); fails loudly otherwise.

mod reboot;
mod services;

use crate::support::Fleet;

/// Run `script` on host `i` and return its trimmed stdout and its exit
/// status (where [`Fleet::host_sh`] wants success).
fn host_status(f: &Fleet, i: usize, script: &str) -> (String, i32) {
    let host = &f.lab_hosts()[i].name;
    let r = f.drover(&["exec", host, "--", script]);
    let out = r.stdout.split_once('\n').map(|(_, out)| out).unwrap_or("").trim().to_string();
    (out, r.code)
}

/// The host is what `--init openrc` promises: `openrc-init` is pid 1,
/// OpenRC's `default` runlevel started sshd, supervise-daemon keeps it
/// (its recorded child is a live `sshd`), and nothing OpenRC started failed.
fn assert_openrc_host(f: &Fleet, i: usize) {
    let out = f.host_sh(
        i,
        "cat /proc/1/comm; echo $(cat /run/openrc/softlevel); rc-service sshd status >/dev/null 2>&1; echo $?; \
         cat /proc/$(cat /run/openrc/options/sshd/child_pid)/comm; ls /run/openrc/failed | wc -l",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["openrc-init", "default", "0", "sshd", "0"], "{out}");
}
