//! Reboots, for real, on lab hosts: `drover lab reboot`, a host rebooting
//! itself, and magic rollback that holds across a reboot (`apply --reboot`,
//! `rollout start --reboot`, `drover reboot`). Real sshd, real init (runit
//! or systemd as the host's pid 1; OpenRC's are in `openrc.rs`), the real
//! agent and its boot-time hook.
//!
//! Needs root (the lab does); fails loudly otherwise.
//!
//! By topic: the lab's own reboots (`lab_reboot`), `apply --reboot` and reboots
//! a role's policy asks for (`apply`), and `drover reboot` and rolling
//! reboots (`rolling`).

mod apply;
mod lab_reboot;
mod rolling;

use std::time::{Duration, Instant};

use drover_lab::Init;

use crate::support::Fleet;

/// The command a host reboots itself with: systemd and OpenRC in order;
/// the lab's runit hosts (pid 1 is `runsvdir`) by `reboot(2)`, as busybox
/// does it.
fn reboot_command(init: Init) -> &'static str {
    match init {
        Init::Systemd => "systemctl reboot",
        Init::Runit => "busybox reboot -f",
        Init::OpenRc => "openrc-shutdown --reboot now",
    }
}

/// Wait until `drover exec` works on host `i` again and `/run/before-boot`
/// (on the host's tmpfs, so gone after a boot) is gone: the host rebooted.
fn wait_rebooted(f: &Fleet, i: usize, within: Duration) {
    let host = &f.lab_hosts()[i].name;
    let deadline = Instant::now() + within;
    loop {
        let r = f.drover(&["exec", host, "--", "test -e /run/before-boot && echo same-boot || echo rebooted"]);
        if r.code == 0 && r.stdout.contains("rebooted") {
            return;
        }
        assert!(Instant::now() < deadline, "{host} did not come back rebooted:\n{}\n{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Mark host `i`'s current boot (a file on its tmpfs `/run`).
fn mark_boot(f: &Fleet, i: usize) {
    f.host_sh(i, "touch /run/before-boot");
}

/// Did host `i` boot since [`mark_boot`]?
fn rebooted_since_mark(f: &Fleet, i: usize) -> bool {
    f.host_sh(i, "test -e /run/before-boot && echo same-boot || echo rebooted") == "rebooted"
}

/// Where the agent's boot-time hook lives on a host with `init`.
fn hook_path(init: Init) -> &'static str {
    match init {
        Init::Systemd => "/etc/systemd/system/drover-boot.service",
        Init::Runit => "/etc/runit/boot-run/10-drover-boot.sh",
        Init::OpenRc => "/etc/init.d/drover-boot",
    }
}
