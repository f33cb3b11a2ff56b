//! A warm resident: every command's result as without it, with no login.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use super::{enable, logins, vias, wait_gone, warm_up, Residents};
use crate::support::{Fleet, Run};

/// What must not differ between a run through the resident and a direct
/// one: everything but times, durations, a service's uptime (`detail`)
/// and the `via` itself.
pub(super) fn same(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !(k.ends_with("_ms")
                        || k.ends_with("_at")
                        || k.contains("time")
                        || k.contains("age")
                        || k.contains("last")
                        || k.as_str() == "via"
                        || k.as_str() == "detail"
                        || k.as_str() == "run"
                        || k.as_str() == "run_id"
                        || k.as_str() == "phases"
                        || k.as_str() == "attempts")
                })
                .map(|(k, v)| (k.clone(), same(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(same).collect()),
        other => other.clone(),
    }
}

pub(super) fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", r.stdout, r.stderr))
}

/// The day-2 commands whose results are compared, direct and warm.
const READS: [&[&str]; 4] = [
    &["plan", "--json"],
    &["status", "--json"],
    &["exec", "all", "--json", "--", "hostname; cat /srv/site/index.html"],
    &["logs", "web", "-n", "5"],
];

#[test]
fn warm_apply_plan_status_exec_logs_through_the_resident_match_direct_and_log_in_nowhere() {
    let f = Fleet::new("persist-warm", 2);
    let res = Residents::new();
    let first = res.drover(&f, &["apply", "--json"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(vias(&first), ["direct", "direct"], "persist is off by default");
    assert!(res.pids().is_empty(), "no resident without [ssh] persist");
    let direct_noop = res.drover(&f, &["apply", "--json"]);
    let direct: Vec<Run> = READS.iter().map(|a| res.drover(&f, a)).collect();

    enable(&f, "1m");
    // The first command starts the resident and goes direct while the
    // resident logs in to its hosts in the background.
    let cold = res.drover(&f, &["apply", "--json"]);
    assert_eq!(cold.code, 0, "{}\n{}", cold.stdout, cold.stderr);
    assert_eq!(vias(&cold), ["direct", "direct"], "{}", cold.stderr);
    let pid = res.pid();
    warm_up(|| res.drover(&f, &["apply", "--json"]));

    let before = logins(&f);
    let warm = res.drover(&f, &["apply", "--json"]);
    assert_eq!((warm.code, direct_noop.code), (0, 0), "{}\n{}", warm.stdout, warm.stderr);
    assert_eq!(vias(&warm), ["resident", "resident"]);
    assert_eq!(same(&json(&warm)["hosts"]), same(&json(&direct_noop)["hosts"]));
    for (args, d) in READS.iter().zip(&direct) {
        let w = res.drover(&f, args);
        assert_eq!(w.code, d.code, "{args:?}:\n{}\n{}", w.stdout, w.stderr);
        if args.contains(&"--json") {
            assert_eq!(same(&json(&w)), same(&json(d)), "{args:?}");
        } else {
            assert_eq!(w.stdout, d.stdout, "{args:?}");
        }
    }
    let plan = res.drover(&f, &["plan", "--json"]);
    assert_eq!(vias(&plan), ["resident", "resident"], "{}", plan.stdout);
    assert_eq!(logins(&f), before, "commands through a warm resident log in nowhere");
    assert_eq!(res.pid(), pid, "one resident served every command");

    // Owner-only: the directory 0700, the socket 0600.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&res.socket_dir()), 0o700);
    let sock = std::fs::read_dir(res.socket_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("a socket");
    assert_eq!(mode(&sock), 0o600);
}

#[test]
fn the_resident_lifts_its_open_files_limit_and_exits_after_its_idle_time_removing_its_socket() {
    let f = Fleet::new("persist-idle", 1);
    let res = Residents::new();
    enable(&f, "2s");
    let r = res.drover(&f, &["exec", "all", "--", "true"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let pid = res.pid();
    // Thousands of held hosts are thousands of sockets: the soft limit of
    // open files is lifted to the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(files[3], files[4], "soft and hard open-files limits: {limits}");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(super::alive(pid), "the resident left before its idle time");
    assert!(wait_gone(pid, Duration::from_secs(6)), "the resident outlived its idle time");
    let left: Vec<_> = std::fs::read_dir(res.socket_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sock" || x == "pid"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let log = std::fs::read_to_string(f.project().join(".drover/resident.log")).unwrap();
    assert!(log.contains("exiting"), "{log}");
}
