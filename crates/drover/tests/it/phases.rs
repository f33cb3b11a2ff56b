//! Where a deploy's time goes (`--json` `phases`), and the runit fast path
//! that keeps a restart from costing `sv`'s poll interval, on real lab hosts.
//!
//! Needs root (the lab does).

use std::fs;

use crate::support::Fleet;
use serde_json::Value;

const PHASES: [&str; 8] = ["connect", "hello", "diff", "send", "activate", "restart", "health", "confirm"];

fn phase(h: &Value, name: &str) -> f64 {
    h["phases"][format!("{name}_ms")].as_f64().unwrap_or_else(|| panic!("no phases.{name}_ms in {h}"))
}

/// Every phase present and non-negative, adding up to no more than the
/// host's wall time; the run's `phases` are the hosts' added up.
fn check_phases(stdout: &str) -> Vec<Value> {
    let run: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let hosts = run["hosts"].as_array().unwrap().clone();
    assert!(!hosts.is_empty());
    for h in &hosts {
        let sum: f64 = PHASES.iter().map(|p| phase(h, p)).sum();
        for p in PHASES {
            assert!(phase(h, p) >= 0.0, "{p} negative: {h}");
        }
        // duration_ms is whole milliseconds, rounded down.
        let wall = h["duration_ms"].as_f64().unwrap() + 1.0;
        assert!(sum <= wall, "phases add up to {sum} ms, more than the host's {wall} ms: {h}");
    }
    for p in PHASES {
        let total: f64 = hosts.iter().map(|h| phase(h, p)).sum();
        let reported = phase(&run, p);
        assert!((total - reported).abs() < 0.01, "run {p}_ms {reported} is not the hosts' sum {total}");
    }
    hosts
}

fn positive(h: &Value, names: &[&str]) {
    for p in names {
        assert!(phase(h, p) > 0.0, "{p} should have taken time: {h}");
    }
}

fn zero(h: &Value, names: &[&str]) {
    for p in names {
        assert_eq!(phase(h, p), 0.0, "{p} should not have happened: {h}");
    }
}

#[test]
fn json_phases_are_present_non_negative_and_within_each_hosts_wall_time() {
    let f = Fleet::new("phases-json", 2);

    // First apply: every phase happens (web has an HTTP health check).
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in check_phases(&r.stdout) {
        assert_eq!(h["outcome"], "changed", "{h}");
        positive(&h, &PHASES);
    }

    // No-op: connect, hello and the hash check only.
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in check_phases(&r.stdout) {
        assert_eq!(h["outcome"], "unchanged", "{h}");
        positive(&h, &["connect", "hello", "diff"]);
        zero(&h, &["send", "activate", "restart", "health", "confirm"]);
    }

    // One file that restarts web: a restart, its health check, a confirmation.
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in check_phases(&r.stdout) {
        assert_eq!(h["restarts"], serde_json::json!(["web"]), "{h}");
        positive(&h, &PHASES);
    }

    // A file that restarts nothing: no restart or health phase.
    fs::write(f.project().join("layers/site/etc/motd"), "new motd\n").unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in check_phases(&r.stdout) {
        assert_eq!(h["restarts"], serde_json::json!([]), "{h}");
        positive(&h, &["connect", "hello", "diff", "send", "activate", "confirm"]);
        zero(&h, &["restart", "health"]);
    }

    // Rollback (to before the motd change): no diff or send, and nothing
    // to restart.
    let r = f.drover(&["rollback", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for h in check_phases(&r.stdout) {
        assert_eq!(h["outcome"], "changed", "{h}");
        positive(&h, &["connect", "hello", "activate", "confirm"]);
        zero(&h, &["diff", "send", "restart", "health"]);
    }
}

/// The restart is ours (runsv's control FIFO and status record, not `sv`);
/// a service runsv does not report running again within `sv`'s 7 s (here:
/// a `finish` script that takes 12 s) fails the activation, which is
/// reverted, and the service comes back on the old generation.
#[test]
fn a_runit_restart_that_does_not_come_back_within_7s_is_rolled_back() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fleet::new("phases-finish", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    let pid_before = f.service_pid(0, "web");

    let finish = f.project().join("layers/site/etc/sv/web/finish");
    fs::create_dir_all(finish.parent().unwrap()).unwrap();
    fs::write(&finish, "#!/bin/sh\nsleep 12\n").unwrap();
    fs::set_permissions(&finish, fs::Permissions::from_mode(0o755)).unwrap();
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &check_phases(&r.stdout)[0];
    assert_eq!(h["outcome"], "rolled-back", "{h}");
    assert_eq!(h["generation"], 1, "{h}");
    let err = h["error"].as_str().unwrap();
    assert!(err.contains("runsv did not report it restarted within 7s"), "{err}");
    assert!(phase(h, "restart") >= 7000.0, "the wait is in the restart phase: {h}");
    assert_eq!(h["revert_errors"], serde_json::json!([]), "{h}");
    // Back on generation 1, served by a new web process.
    assert!(!f.host_file(0, "/etc/sv/web/finish").exists(), "the finish script was reverted");
    let pid_after = f.service_pid(0, "web");
    assert!(!pid_after.is_empty() && pid_after != pid_before, "web runs again ({pid_before} -> {pid_after})");
    assert!(!crate::support::curl(&format!("http://{}:8080/", f.lab_hosts()[0].address)).contains("<h1>v2 "));
}
