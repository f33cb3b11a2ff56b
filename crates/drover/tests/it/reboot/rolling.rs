//! `drover reboot` and `rollout start --reboot`: batch by batch, each back
//! and healthy before the next; refusals before any host is touched.

use std::time::{Duration, Instant};

use super::{mark_boot, rebooted_since_mark};
use crate::support::Fleet;

/// Simulated hosts are directories on the controller machine: `--reboot`
/// with `--simulate` is refused before any host is touched (exit 1, saying
/// what to drop), for `apply`, `rollout start` and `drover reboot`; the
/// simulated hosts stay as they were.
#[test]
fn reboot_is_refused_for_simulated_hosts_before_any_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    let sim = dir.path().join("sim");
    crate::support::init_project(&proj);
    std::fs::write(proj.join("inventory.toml"), "[hosts.s1]\naddress = \"s1\"\n").unwrap();
    let drover = |args: &[&str]| {
        crate::support::Run::from(
            std::process::Command::new(crate::support::DROVER).arg("-C").arg(&proj).args(args).output().unwrap(),
        )
    };
    let sim_arg = sim.to_str().unwrap();
    for args in [
        vec!["apply", "--reboot", "--simulate", sim_arg],
        vec!["rollout", "start", "--reboot", "--simulate", sim_arg],
        vec!["reboot", "all", "--simulate", sim_arg],
    ] {
        let r = drover(&args);
        assert_eq!(r.code, 1, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("simulated hosts cannot reboot"), "{args:?}: {}", r.stderr);
        assert!(!sim.join("s1/var/lib/drover").exists(), "{args:?} touched the simulated host");
    }
    // No rollout was recorded (none to resume or abort).
    let r = drover(&["rollout", "status", "--json"]);
    assert_eq!((r.code, r.stdout.trim()), (0, "[]"), "{}", r.stderr);
}

/// `rollout start --reboot` over 6 hosts in batches of 2, where h3's new
/// generation starts a service that fails its health check: batch 1 (h1,
/// h2) is applied, rebooted and confirmed; batch 2 stops the rollout (h3
/// rolled back by its own health gate), and h4, which had been applied and
/// rebooted, is reverted to generation 1, itself with a reboot; batch 3
/// (h5, h6) is never touched, not even rebooted.
#[test]
fn rolling_reboot_stops_and_reverts_the_batch_with_an_unhealthy_host() {
    let f = Fleet::new("rb-roll", 6);
    assert_eq!(f.apply_json(&[]).code, 0);
    for i in 0..6 {
        mark_boot(&f, i);
    }
    let p = f.project();
    std::fs::write(p.join("layers/site/etc/motd"), "generation two\n").unwrap();
    std::fs::write(
        p.join("services/web-bad.toml"),
        "command = \"busybox httpd -f -p 8081 -h /srv/site\"\n\n[health]\nhttp = \"http://127.0.0.1:8081/missing\"\ntimeout = \"1s\"\nretries = 4\ninterval = \"250ms\"\n",
    )
    .unwrap();
    let site = std::fs::read_to_string(p.join("roles/site.toml")).unwrap();
    std::fs::write(
        p.join("roles/broken.toml"),
        site.replace("services = [\"web\"]", "services = [\"web\", \"web-bad\"]"),
    )
    .unwrap();
    let inv = std::fs::read_to_string(p.join("inventory.toml")).unwrap();
    std::fs::write(p.join("inventory.toml"), inv.replace("[hosts.h3]\n", "[hosts.h3]\nroles = [\"broken\"]\n"))
        .unwrap();

    let r = f.drover(&[
        "rollout",
        "start",
        "--batch",
        "2",
        "--reboot",
        "--reboot-timeout",
        "60s",
        "--retries",
        "0",
        "--json",
    ]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    let batches = v["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "the third batch must not run: {v}");
    assert_eq!(batches[0]["outcome"], "ok", "{v}");
    for h in batches[0]["reports"].as_array().unwrap() {
        assert_eq!(
            (h["outcome"].as_str(), h["rebooted"].as_bool(), h["generation"].as_u64()),
            (Some("changed"), Some(true), Some(2)),
            "{h}"
        );
    }
    let b2 = &batches[1];
    assert_eq!(b2["outcome"], "failed", "{b2}");
    assert!(b2["reason"].as_str().unwrap().contains("h3"), "{b2}");
    let h3 = b2["reports"].as_array().unwrap().iter().find(|h| h["host"] == "h3").unwrap();
    assert_eq!(h3["outcome"], "rolled-back", "{h3}");
    assert!(h3["error"].as_str().unwrap().contains("web-bad"), "{h3}");
    let reverted = b2["reverted"].as_array().unwrap();
    assert_eq!(reverted.len(), 1, "only h4 had been updated: {b2}");
    assert_eq!((reverted[0]["host"].as_str(), reverted[0]["generation"].as_u64()), (Some("h4"), Some(1)), "{b2}");
    assert_eq!(reverted[0]["rebooted"], true, "the revert reboots too: {b2}");

    let motd = |i: usize| std::fs::read_to_string(f.host_file(i, "/etc/motd")).unwrap();
    for i in [0, 1] {
        assert_eq!(motd(i), "generation two\n");
        assert!(rebooted_since_mark(&f, i), "h{} was not rebooted", i + 1);
    }
    for i in [2, 3, 4, 5] {
        assert_ne!(motd(i), "generation two\n", "h{} is not back on generation 1", i + 1);
    }
    assert!(!rebooted_since_mark(&f, 2), "h3 failed before its reboot: it must not have rebooted");
    assert!(rebooted_since_mark(&f, 3), "h4's revert did not reboot it");
    for i in [4, 5] {
        assert!(!rebooted_since_mark(&f, i), "h{} of the untouched batch was rebooted", i + 1);
    }
    for i in 0..6 {
        assert!(!f.host_file(i, "/var/lib/drover/pending.json").exists(), "h{} left unconfirmed", i + 1);
    }
}

/// `drover reboot all --batch 2`: every host rebooted and back healthy,
/// batch by batch (reported `rebooted`, exit 0). Then h1 is made to come
/// back without its web service (runit's `down` file: not started at boot):
/// its batch fails with the reason, the next batch is `skipped`, exit 2.
#[test]
fn rolling_reboot_waits_for_each_batch_and_stops_at_an_unhealthy_one() {
    let f = Fleet::new("rb-cmd", 3);
    assert_eq!(f.apply_json(&[]).code, 0);
    for i in 0..3 {
        mark_boot(&f, i);
    }
    let r = f.drover(&["reboot", "all", "--batch", "2", "--reboot-timeout", "60s", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for h in r.hosts() {
        assert_eq!((h["outcome"].as_str(), h["rebooted"].as_bool()), (Some("rebooted"), Some(true)), "{h}");
    }
    for i in 0..3 {
        assert!(rebooted_since_mark(&f, i), "h{} was not rebooted", i + 1);
        mark_boot(&f, i);
    }
    f.host_sh(0, "touch /etc/sv/web/down");
    let r = f.drover(&["reboot", "h1,h3", "--batch", "1", "--reboot-timeout", "60s", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let hosts = r.hosts();
    assert_eq!(hosts[0]["outcome"], "failed", "{}", r.stdout);
    assert!(hosts[0]["error"].as_str().unwrap().contains("services unhealthy after the reboot"), "{}", r.stdout);
    assert_eq!(hosts[1]["outcome"], "skipped", "{}", r.stdout);
    assert!(hosts[1]["error"].as_str().unwrap().contains("h1"), "{}", r.stdout);
    assert!(rebooted_since_mark(&f, 0));
    assert!(!rebooted_since_mark(&f, 2), "h3 was rebooted after h1's batch failed");
}

/// A host that does not come back (here sshd stays down after the boot:
/// runit's `down` file) fails `drover reboot` once the wait is over (twice
/// the reboot timeout plus the confirm window), saying so and what the last
/// attempt got.
#[test]
fn a_host_that_does_not_come_back_in_time_fails_with_the_reason() {
    let f = Fleet::new("rb-lost", 1);
    let settings = f.project().join("drover.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("confirm-timeout = \"30s\"", "confirm-timeout = \"3s\"")).unwrap();
    f.host_sh(0, "touch /etc/service/sshd/down");
    let started = Instant::now();
    let r = f.drover(&["reboot", "h1", "--reboot-timeout", "2s", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["rebooted"].as_bool()), (Some("failed"), Some(true)), "{h}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("did not come back from the reboot within 7s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
    // Put sshd back from outside and reboot the host the lab's way.
    std::fs::remove_file(f.host_file(0, "/etc/service/sshd/down")).unwrap();
    assert_eq!(f.lab(&["reboot", "h1"]).code, 0);
    assert_eq!(f.host_sh(0, "echo back"), "back");
}

/// `drover reboot` refuses a host whose last generation still awaits its
/// confirmation (the agent was killed right after activating it): a reboot
/// now would decide that generation's fate by accident. The next `apply`
/// confirms it; then the reboot goes through.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn reboot_refuses_a_host_with_an_unconfirmed_generation() {
    let f = Fleet::new("rb-pending", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    std::fs::write(f.project().join("layers/site/etc/motd"), "pending\n").unwrap();
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    std::fs::write(&hook, "awaiting-confirm").unwrap();
    let mut child = f.spawn_drover(&["apply", "--json", "--confirm-timeout", "120s", "--retries", "0"]);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "agent never reached awaiting-confirm");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(f.kill_agent(0) > 0);
    std::fs::remove_file(&hook).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(f.host_file(0, "/var/lib/drover/pending.json").exists());

    let r = f.drover(&["reboot", "h1", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["rebooted"].as_bool()), (Some("failed"), Some(false)), "{h}");
    assert!(h["error"].as_str().unwrap().contains("generation 2 still awaits confirmation"), "{h}");
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "changed");
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists());
    let r = f.drover(&["reboot", "h1", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}
