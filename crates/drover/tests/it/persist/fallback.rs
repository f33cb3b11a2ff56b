//! When the resident is not to be used (not ours, another project's) or
//! dies mid-run, commands go direct and behave as without it.

use std::fs;
use std::time::{Duration, Instant};

use super::{enable, kill, vias, warm_up, Residents};
use crate::support::{copy_tree, Fleet, Run};

#[test]
fn a_socket_directory_of_another_uid_and_another_projects_resident_are_not_used() {
    let f = Fleet::new("persist-foreign", 1);
    let res = Residents::new();
    enable(&f, "1m");
    // The socket directory exists but belongs to someone else: no resident
    // is started or used there, and the command works directly.
    fs::create_dir(res.socket_dir()).unwrap();
    std::os::unix::fs::chown(res.socket_dir(), Some(65534), Some(65534)).unwrap();
    let r = res.drover(&f, &["apply", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(vias(&r), ["direct"]);
    assert!(fs::read_dir(res.socket_dir()).unwrap().next().is_none(), "nothing created in another uid's directory");
    fs::remove_dir(res.socket_dir()).unwrap();

    // Project A's resident serves A only: a copy of the project (same
    // inventory, another directory) gets a resident of its own.
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    let a = res.pid();
    let other = tempfile::tempdir().unwrap();
    copy_tree(&f.project(), other.path());
    let _ = fs::remove_file(other.path().join(".drover/resident.log"));
    warm_up(|| Run::from(res.command(other.path(), &["apply", "--json"]).output().unwrap()));
    let pids = res.pids();
    assert_eq!(pids.len(), 2, "a resident per project: {pids:?}");
    assert!(pids.contains(&a));
    assert!(other.path().join(".drover/resident.log").exists(), "B's resident logs in B");
}

#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn killing_the_resident_mid_apply_leaves_hosts_whole_and_reports_each_host_once() {
    let f = Fleet::new("persist-kill", 2);
    let res = Residents::new();
    enable(&f, "1m");
    let first = res.drover(&f, &["apply", "--json"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    let pid = res.pid();
    fs::write(f.project().join("layers/site/srv/site/index.html.j2"), "v2 {{ generation }}\n").unwrap();
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    fs::write(&hook, "mid-swap").unwrap();
    let child = res
        .command(&f.project(), &["apply", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "agent never reached mid-swap");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The resident dies with h1's agent half-way through its swap.
    kill(pid);
    fs::remove_file(&hook).unwrap();
    fs::write(f.host_file(0, "/var/lib/drover/test-hook.continue"), "").unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let hosts = r.hosts();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["h1", "h2"], "every host reported once");
    for h in &hosts {
        assert_eq!(h["outcome"], "changed", "{h}");
        assert_eq!(h["generation"], 2, "one new generation: {h}");
    }
    assert!(hosts[0]["attempts"].as_u64().unwrap() >= 2, "h1 was retried: {}", hosts[0]);
    for i in 0..2 {
        assert_eq!(fs::read_to_string(f.host_file(i, "/srv/site/index.html")).unwrap(), "v2 2\n");
    }
    let plan = res.drover(&f, &["plan", "--json"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.hosts().iter().all(|h| h["outcome"] == "unchanged"), "{}", plan.stdout);
}
