//! Reboots, for real, on lab hosts: `drover lab reboot`, a host rebooting
//! itself, and magic rollback that holds across a reboot (`apply --reboot`,
//! `rollout start --reboot`, `drover reboot`). Real sshd, real init (runit
//! or systemd as the host's pid 1), the real agent and its boot-time hook.
//!
//! Needs root (the lab does); fails loudly otherwise.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use drover_lab::Init;
use support::Fleet;

/// The command a host reboots itself with: systemd in order; the lab's
/// runit hosts (pid 1 is `runsvdir`) by `reboot(2)`, as busybox does it.
fn reboot_command(init: Init) -> &'static str {
    match init {
        Init::Systemd => "systemctl reboot",
        Init::Runit => "busybox reboot -f",
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

/// `drover lab reboot h1` kills every process of the host (a `sleep` started
/// over SSH is gone, `/run` is empty again), keeps its root file system as
/// it is on disk (a file written under /root is still there), brings sshd
/// back, and `drover exec` works again. Then the host reboots *itself*
/// (`systemctl reboot` / `reboot(2)`): it boots again by itself, the same way.
fn lab_reboot(init: Init) {
    let f = Fleet::on("rb-lab", 1, init);
    let mark = "nohup sleep 1000 >/dev/null 2>&1 & echo kept > /root/kept; touch /run/before-boot; pgrep -xc sleep";
    assert_eq!(f.host_sh(0, mark), "1");
    let r = f.lab(&["reboot", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("h1 rebooted"), "{}", r.stdout);
    let after = f.host_sh(0, "pgrep -xc sleep; cat /root/kept; test -e /run/before-boot && echo same-boot || echo rebooted");
    assert_eq!(after, "0\nkept\nrebooted");

    f.host_sh(0, "touch /run/before-boot");
    f.host_sh(0, &format!("(sleep 1; {}) >/dev/null 2>&1 &", reboot_command(init)));
    wait_rebooted(&f, 0, Duration::from_secs(90));
    assert_eq!(f.host_sh(0, "cat /root/kept"), "kept");
}
on_both_inits!(lab_reboot: lab_reboot_restarts_the_host_from_its_root_on_disk_runit, lab_reboot_restarts_the_host_from_its_root_on_disk_systemd);
