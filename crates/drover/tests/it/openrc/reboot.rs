//! Reboots of an OpenRC host: the lab's, and magic rollback across one.

use std::time::{Duration, Instant};

use drover_lab::Init;

use super::assert_openrc_host;
use crate::support::{curl, Fleet};

/// Mark the host's current boot (a file on its tmpfs `/run`).
fn mark_boot(f: &Fleet) {
    f.host_sh(0, "touch /run/before-boot");
}

fn rebooted_since_mark(f: &Fleet) -> bool {
    f.host_sh(0, "test -e /run/before-boot && echo same-boot || echo rebooted") == "rebooted"
}

/// - the lab keeps its init (`up --init runit` on it is refused);
/// - `lab reboot` boots the host again from its root on disk: openrc-init,
///   sshd, and web (in the `default` runlevel) started by OpenRC;
/// - `apply --reboot` of a good generation: the agent reboots the host
///   through `openrc-shutdown`, its boot hook (`/etc/init.d/drover-boot`, in
///   the `boot` runlevel, so done before `default` starts web) re-arms the
///   rollback, and the controller confirms after the boot;
/// - `apply --reboot` of a generation that breaks SSH only after a boot
///   (sshd moved to another port): nobody can confirm, the watchdog the
///   hook started reverts and reboots once more into the previous
///   generation; `rolled-back` with the agent's reason, exit 2.
#[test]
fn openrc_host_reboots_and_magic_rollback_holds_across_the_boot() {
    let f = Fleet::on("orc-reboot", 1, Init::OpenRc);
    assert_eq!(f.apply_json(&[]).code, 0);
    let address = f.lab_hosts()[0].address;
    // The lab keeps its init.
    let r = f.lab(&["up", "2", "--init", "runit"]);
    assert!(r.code != 0 && r.stderr.contains("runs openrc hosts") && r.stderr.contains("runit"), "{}", r.stderr);

    // The lab's reboot.
    mark_boot(&f);
    let r = f.lab(&["reboot", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(rebooted_since_mark(&f), "lab reboot did not reboot h1");
    assert_openrc_host(&f, 0);
    let start = Instant::now();
    while f.service_pid(0, "web").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "OpenRC did not start web at boot");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(curl(&format!("http://{address}:8080/")).contains("host: h1"));

    // A good generation, confirmed after the boot.
    mark_boot(&f);
    std::fs::write(f.project().join("layers/site/etc/motd"), "after the reboot\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "20s", "--reboot-timeout", "90s"]);
    eprintln!("openrc: apply --reboot, confirmed after the boot, in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(
        (h["outcome"].as_str(), h["rebooted"].as_bool(), h["generation"].as_u64()),
        (Some("changed"), Some(true), Some(2)),
        "{h}"
    );
    assert!(rebooted_since_mark(&f), "the host did not reboot");
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists(), "generation 2 still unconfirmed");
    let link = std::fs::read_link(f.host_file(0, "/etc/runlevels/boot/drover-boot")).unwrap();
    assert_eq!(link.to_str(), Some("/etc/init.d/drover-boot"));
    // The hook ran in this boot, as a started service of the boot runlevel.
    assert_eq!(f.host_sh(0, "rc-service drover-boot status >/dev/null 2>&1; echo $?"), "0");
    assert!(f.host_sh(0, "cat /var/lib/drover/boot.json").contains("\"boots\": 1"));
    assert!(curl(&format!("http://{address}:8080/")).contains("host: h1"));

    // A generation that locks SSH out after the boot comes back on 2.
    mark_boot(&f);
    let dropin = f.project().join("layers/site/etc/ssh/sshd_config.d/zz-moved.conf");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    std::fs::write(&dropin, "Port 2222\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "8s", "--reboot-timeout", "60s"]);
    eprintln!("openrc: rolled back across two reboots in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(r.code, 2, "a rolled-back host fails the run:\n{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(
        (h["outcome"].as_str(), h["rebooted"].as_bool(), h["generation"].as_u64()),
        (Some("rolled-back"), Some(true), Some(2)),
        "{h}"
    );
    let error = h["error"].as_str().unwrap();
    assert!(
        error.contains("generation 3 was not confirmed after the reboot") && error.contains("rebooting once"),
        "{error}"
    );
    assert!(!f.host_file(0, "/etc/ssh/sshd_config.d/zz-moved.conf").exists(), "the drop-in is still there");
    let guard = f.host_sh(0, "cat /var/lib/drover/reboot-guard.json; cat /var/lib/drover/boot.json");
    assert!(guard.contains("\"generation\": 3") && guard.contains("\"boots\": 3"), "{guard}");
    std::fs::remove_dir_all(f.project().join("layers/site/etc/ssh")).unwrap();
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}
