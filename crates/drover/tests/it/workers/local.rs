//! `apply --workers N` and `rollout start --workers N`: local worker
//! processes that share the run, reporting like a single controller.

use std::process::{Command, Stdio};

use drover_state::Store;

use crate::support::{sim_project as project, Run, DROVER};

/// `--workers` on the default SQLite store is refused before any host is
/// touched, saying why and what to set.
#[test]
fn apply_with_workers_on_sqlite_is_refused_naming_why() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 3);
    let hosts = tmp.path().join("hosts");
    let out = Run::from(
        Command::new(DROVER)
            .arg("-C")
            .arg(&proj)
            .args(["apply", "--workers", "2", "--sim-failure-rate", "0", "--simulate"])
            .arg(&hosts)
            .env_remove("DROVER_STATE_URL")
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("--workers needs a shared PostgreSQL state store"), "{}", out.stderr);
    assert!(out.stderr.contains("state.db"), "names the store: {}", out.stderr);
    assert!(out.stderr.contains("[state] url"), "says what to set: {}", out.stderr);
    assert!(!hosts.exists(), "no host was touched");
}

/// `apply --workers 2` starts two local worker processes that share the
/// run; the report and the history are those of an ordinary apply, and a
/// second apply through workers finds everything unchanged. Both workers
/// take jobs: each holds at most its even share (20) of the hosts at once,
/// and each simulated round trip takes 400 ms, so the first worker's share
/// lasts seconds — longer than the second takes to start on a loaded
/// 2-core CI machine. (A worker used to claim up to its parallelism, 256:
/// the first one up took all 40 hosts whenever it started first.)
#[test]
fn apply_with_two_local_workers_reports_like_a_single_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 40);
    let hosts = tmp.path().join("hosts");
    let url = drover_pgtest::shared().fresh_db();
    let apply = || {
        Run::from(
            Command::new(DROVER)
                .arg("-C")
                .arg(&proj)
                .args([
                    "apply",
                    "--json",
                    "--workers",
                    "2",
                    "--sim-latency",
                    "400ms",
                    "--sim-failure-rate",
                    "0",
                    "--simulate",
                ])
                .arg(&hosts)
                .env("DROVER_STATE_URL", &url)
                .output()
                .unwrap(),
        )
    };
    let first = apply();
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let names: Vec<String> = first.hosts().iter().map(|h| h["host"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = (1..=40).map(|i| format!("s{i}")).collect();
    assert_eq!(names, expected, "every host, in host order");
    assert!(first.hosts().iter().all(|h| h["outcome"] == "changed" && h["generation"] == 1));
    let v: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(v["command"], "apply");

    let store = Store::connect(&url).unwrap();
    let run = store.runs(1).unwrap().remove(0);
    let jobs = store.jobs(run.id).unwrap();
    let by: std::collections::BTreeSet<_> = jobs.iter().filter_map(|j| j.claimed_by.clone()).collect();
    assert_eq!(by.len(), 2, "both local workers took jobs: {by:?}");
    assert_eq!(store.history(None, 1000).unwrap().iter().filter(|h| h.run_id == run.id).count(), 40);

    let again = apply();
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.hosts().iter().all(|h| h["outcome"] == "unchanged" && h["bytes_sent"] == 0));
}

/// A rollout through two local workers goes batch by batch behind its
/// gates. 30 hosts at release 1 (an apply through workers), then release 2
/// in batches of 10 with one host of the second batch failing its health
/// check: batch 1 converges through the workers; batch 2 fails and its
/// changed hosts are put back to release 1 by the controller; batch 3 is
/// never handed out (no job, still at release 1). With that host fixed, the
/// next rollout brings every host to release 2, and both workers took jobs.
#[test]
fn a_rollout_through_workers_goes_batch_by_batch_and_stops_at_a_failed_gate() {
    const N: usize = 30;
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), N);
    std::fs::write(
        proj.join("services/checked.toml"),
        "command = \"sleep infinity\"\n\n[health]\ncommand = \"test ! -e BROKEN\"\ntimeout = \"2s\"\nretries = 1\ninterval = \"10ms\"\n",
    )
    .unwrap();
    let role = std::fs::read_to_string(proj.join("roles/site.toml")).unwrap();
    std::fs::write(
        proj.join("roles/site.toml"),
        role.replace("services = [\"web\"]", "services = [\"web\", \"checked\"]"),
    )
    .unwrap();
    let hosts = tmp.path().join("hosts");
    let url = drover_pgtest::shared().fresh_db();
    let drover = |args: &[&str]| {
        Run::from(
            Command::new(DROVER)
                .arg("-C")
                .arg(&proj)
                .args(args)
                .arg("--simulate")
                .arg(&hosts)
                .env("DROVER_STATE_URL", &url)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let rollout =
        || drover(&["rollout", "start", "--json", "--batch", "10", "--max-failure-ratio", "0", "--workers", "2"]);
    let release = |h: &str| {
        let page = std::fs::read_to_string(hosts.join(h).join("srv/site/index.html")).unwrap();
        assert!(page.contains(h), "{h}'s page names it: {page}");
        if page.contains("release 2") {
            2
        } else {
            1
        }
    };
    let first = drover(&["apply", "--json", "--workers", "2", "--sim-latency", "0", "--sim-failure-rate", "0"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);

    // Batches follow the hosts' name order.
    let mut names: Vec<String> = (1..=N).map(|i| format!("s{i}")).collect();
    names.sort();
    let batches: Vec<&[String]> = names.chunks(10).collect();
    let broken = &batches[1][4];
    std::fs::write(hosts.join(broken).join("BROKEN"), "").unwrap();
    let tpl = proj.join("layers/site/srv/site/index.html.j2");
    let text = std::fs::read_to_string(&tpl).unwrap();
    std::fs::write(&tpl, format!("{text}\n<p>release 2</p>\n")).unwrap();

    let failed = rollout();
    assert_eq!(failed.code, 2, "{}\n{}", failed.stdout, failed.stderr);
    let v: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v:#}");
    let reported = v["batches"].as_array().unwrap();
    assert_eq!(reported.len(), 2, "batch 3 never started: {v:#}");
    assert_eq!(reported[0]["outcome"], "ok", "{v:#}");
    assert_eq!(reported[1]["outcome"], "failed", "{v:#}");
    assert!(reported[1]["reason"].as_str().unwrap().contains(broken.as_str()), "{v:#}");
    let store = Store::connect(&url).unwrap();
    let run = store.runs(1).unwrap().remove(0);
    let jobs = store.jobs(run.id).unwrap();
    let mut queued: Vec<String> = jobs.iter().map(|j| j.host.clone()).collect();
    queued.sort();
    assert_eq!(queued, names[..20].to_vec(), "only batches 1 and 2 were handed to workers");
    assert!(jobs.iter().all(|j| j.state == drover_state::JobState::Done));
    assert!(batches[0].iter().all(|h| release(h) == 2), "batch 1 converged");
    assert!(batches[1].iter().all(|h| release(h) == 1), "batch 2 was put back");
    assert!(batches[2].iter().all(|h| release(h) == 1), "batch 3 was not touched");

    std::fs::remove_file(hosts.join(broken).join("BROKEN")).unwrap();
    let ok = rollout();
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!((v["status"].as_str(), v["batches"].as_array().unwrap().len()), (Some("done"), 3), "{v:#}");
    assert!(names.iter().all(|h| release(h) == 2));
    let run = store.runs(1).unwrap().remove(0);
    let jobs = store.jobs(run.id).unwrap();
    assert_eq!(jobs.len(), N);
    let by: std::collections::BTreeSet<_> = jobs.iter().filter_map(|j| j.claimed_by.clone()).collect();
    assert!(by.len() >= 2, "the batches were split among workers: {by:?}");
    assert_eq!(store.history(None, 1000).unwrap().iter().filter(|h| h.run_id == run.id).count(), N, "each host once");
}
