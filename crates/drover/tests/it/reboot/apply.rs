//! `apply --reboot`, and `reboot = true` in a role's policy: magic rollback
//! that holds across the boot.

use std::time::{Duration, Instant};

use drover_lab::Init;

use super::{hook_path, mark_boot, rebooted_since_mark};
use crate::support::Fleet;

/// `apply --reboot` with a good generation: the host reboots, comes back,
/// its services are healthy, and the generation is confirmed after the
/// boot: reported `changed` and `rebooted`, nothing left pending, the new
/// files in place, the boot-time hook installed (on systemd, enabled early
/// in the boot).
fn good_generation_is_confirmed_after_reboot(init: Init) {
    let f = Fleet::on("rb-good", 1, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    mark_boot(&f, 0);
    std::fs::write(f.project().join("layers/site/etc/motd"), "after the reboot\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "20s", "--reboot-timeout", "90s"]);
    eprintln!("apply --reboot, confirmed after the boot, in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert_eq!(h["rebooted"], true, "{h}");
    assert_eq!(h["generation"], 2, "{h}");
    assert!(rebooted_since_mark(&f, 0), "the host did not reboot");
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists(), "generation 2 still unconfirmed");
    assert_eq!(std::fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "after the reboot\n");
    assert!(f.host_file(0, hook_path(init)).exists(), "no boot-time hook at {}", hook_path(init));
    if init == Init::Systemd {
        assert_eq!(
            f.host_sh(0, "systemctl is-enabled drover-boot; systemctl is-active drover-boot"),
            "enabled\nactive"
        );
        // It ran before the service drover manages started.
        let t = f.host_sh(
            0,
            "systemctl show -P ActiveEnterTimestampMonotonic drover-boot; systemctl show -P ExecMainStartTimestampMonotonic web",
        );
        let t: Vec<u64> = t.lines().map(|l| l.parse().unwrap()).collect();
        assert!(t[0] > 0 && t[0] <= t[1], "drover-boot done at {} us, web started at {} us", t[0], t[1]);
    }
    let boots = f.host_sh(0, "cat /var/lib/drover/boot.json");
    assert!(boots.contains("\"boots\": 1"), "{boots}");
    // The service came back with the boot (the page keeps the generation
    // it last changed in).
    let web = crate::support::curl(&format!("http://{}:8080/", f.lab_hosts()[0].address));
    assert!(web.contains("host: h1"), "{web}");
    // Confirmed means kept: well past the agent's deadline, still generation 2.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}
on_both_inits!(good_generation_is_confirmed_after_reboot: good_generation_is_confirmed_after_reboot_runit, good_generation_is_confirmed_after_reboot_systemd);

/// A generation that breaks SSH only once sshd restarts (a drop-in moving
/// it to another port: the running sshd keeps its configuration) is
/// applied with `--reboot`. After the boot nobody can log in; the agent's
/// boot-time hook had re-armed the watchdog, which reverts at the deadline
/// and reboots once more into generation 1. The controller, still waiting,
/// finds it there: `rolled-back` with the agent's reason, exit code 2, no
/// operator action. The drop-in is gone, SSH works, the boot-loop guard
/// says why it rebooted, and the host booted exactly twice.
fn generation_breaking_ssh_after_reboot_comes_back_on_the_previous(init: Init) {
    let f = Fleet::on("rb-ssh", 1, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    mark_boot(&f, 0);
    let dropin = f.project().join("layers/site/etc/ssh/sshd_config.d/zz-moved.conf");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    std::fs::write(&dropin, "Port 2222\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "8s", "--reboot-timeout", "60s"]);
    assert_eq!(r.code, 2, "a rolled-back host fails the run:\n{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h}");
    assert_eq!(h["rebooted"], true, "{h}");
    assert_eq!(h["generation"], 1, "{h}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("generation 2 was not confirmed after the reboot"), "{error}");
    assert!(error.contains("no confirmation from the controller before the deadline"), "{error}");
    assert!(error.contains("rebooting once"), "{error}");
    assert!(!f.host_file(0, "/etc/ssh/sshd_config.d/zz-moved.conf").exists(), "the drop-in is still there");
    assert!(rebooted_since_mark(&f, 0));
    let guard = f.host_sh(0, "cat /var/lib/drover/reboot-guard.json; cat /var/lib/drover/boot.json");
    assert!(guard.contains("\"generation\": 2") && guard.contains("\"boots\": 2"), "{guard}");
    eprintln!("rolled back across two reboots in {:.1}s", started.elapsed().as_secs_f64());
    // A later apply (without the drop-in) sees generation 1 and is a no-op.
    std::fs::remove_dir_all(f.project().join("layers/site/etc/ssh")).unwrap();
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}
on_both_inits!(generation_breaking_ssh_after_reboot_comes_back_on_the_previous: generation_breaking_ssh_after_reboot_comes_back_on_the_previous_runit, generation_breaking_ssh_after_reboot_comes_back_on_the_previous_systemd);

/// `reboot = true` in a role's `[rollout]` policy: a plain `apply` reboots
/// the hosts of that role (and confirms after the boot), and only them.
#[test]
fn reboot_in_a_role_policy_reboots_that_roles_hosts_on_apply() {
    let f = Fleet::new("rb-role", 2);
    let p = f.project();
    let site = std::fs::read_to_string(p.join("roles/site.toml")).unwrap();
    std::fs::write(p.join("roles/kernel.toml"), format!("{site}\n[rollout]\nreboot = true\n")).unwrap();
    let inv = std::fs::read_to_string(p.join("inventory.toml")).unwrap();
    std::fs::write(p.join("inventory.toml"), inv.replace("[hosts.h2]\n", "[hosts.h2]\nroles = [\"kernel\"]\n"))
        .unwrap();
    assert_eq!(f.apply_json(&["--reboot-timeout", "60s"]).code, 0);
    mark_boot(&f, 0);
    mark_boot(&f, 1);
    std::fs::write(p.join("layers/site/etc/motd"), "v2\n").unwrap();
    let r = f.apply_json(&["--reboot-timeout", "60s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let hosts = r.hosts();
    assert_eq!((hosts[0]["outcome"].as_str(), hosts[0]["rebooted"].as_bool()), (Some("changed"), Some(false)));
    assert_eq!((hosts[1]["outcome"].as_str(), hosts[1]["rebooted"].as_bool()), (Some("changed"), Some(true)));
    assert!(!rebooted_since_mark(&f, 0), "h1 has no role asking for reboots");
    assert!(rebooted_since_mark(&f, 1), "h2's role asks for reboots");
}

/// A generation healthy when activated but not after a boot (here runit's
/// `down` file in the web service's directory: the running service is
/// untouched, runit does not start it at boot). After the reboot the
/// controller finds web unhealthy and does not confirm; the host reverts
/// at the deadline and reboots into generation 1, where web starts again.
/// Reported `rolled-back`, naming the unhealthy service.
#[test]
fn a_generation_unhealthy_only_after_the_boot_is_not_confirmed_and_reverts() {
    let f = Fleet::new("rb-sick", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    let down = f.project().join("layers/site/etc/sv/web/down");
    std::fs::create_dir_all(down.parent().unwrap()).unwrap();
    std::fs::write(&down, "").unwrap();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "6s", "--reboot-timeout", "60s"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("rolled-back"), Some(1)), "{h}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("services unhealthy: web"), "{error}");
    assert!(error.contains("rebooting once"), "{error}");
    assert!(!f.host_file(0, "/etc/sv/web/down").exists());
    let web = crate::support::curl(&format!("http://{}:8080/", f.lab_hosts()[0].address));
    assert!(web.contains("host: h1"), "{web}");
}
