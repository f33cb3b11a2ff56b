//! `drover lab reboot` and a lab host rebooting itself.

use std::time::Duration;

use drover_lab::Init;

use super::{reboot_command, wait_rebooted};
use crate::support::Fleet;

/// `drover lab reboot h1` kills every process of the host (a `sleep` started
/// over SSH is gone, `/run` is empty again), keeps its root file system as
/// it is on disk (a file written under /root is still there), brings sshd
/// back, and `drover exec` works again. Then the host reboots *itself*
/// (`systemctl reboot` / `reboot(2)`): it boots again by itself, the same way.
fn lab_reboot(init: Init) {
    let f = Fleet::on("rb-lab", 1, init);
    // The background shell may not have become `sleep` yet when pgrep
    // looks (a loaded machine): wait for it, up to 5 s.
    let mark = "nohup sleep 1000 >/dev/null 2>&1 & echo kept > /root/kept; touch /run/before-boot; \
                i=0; until pgrep -x sleep >/dev/null || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done; \
                pgrep -xc sleep";
    assert_eq!(f.host_sh(0, mark), "1");
    let r = f.lab(&["reboot", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("h1 rebooted"), "{}", r.stdout);
    let after =
        f.host_sh(0, "pgrep -xc sleep; cat /root/kept; test -e /run/before-boot && echo same-boot || echo rebooted");
    assert_eq!(after, "0\nkept\nrebooted");

    f.host_sh(0, "touch /run/before-boot");
    f.host_sh(0, &format!("(sleep 1; {}) >/dev/null 2>&1 &", reboot_command(init)));
    wait_rebooted(&f, 0, Duration::from_secs(90));
    assert_eq!(f.host_sh(0, "cat /root/kept"), "kept");

    // A frozen host reboots too, and is no longer frozen after it.
    assert_eq!(f.lab(&["fault", "h1", "freeze"]).code, 0);
    let r = f.lab(&["reboot", "all"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let status = f.lab(&["status", "--json"]);
    assert!(status.stdout.contains("\"up\"") && !status.stdout.contains("frozen\""), "{}", status.stdout);
    assert_eq!(f.host_sh(0, "echo back"), "back");
    // A host the lab does not have: refused, naming it.
    let r = f.lab(&["reboot", "h9"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("h9"), "{}", r.stderr);
}
on_both_inits!(lab_reboot: lab_reboot_restarts_the_host_from_its_root_on_disk_runit, lab_reboot_restarts_the_host_from_its_root_on_disk_systemd);
