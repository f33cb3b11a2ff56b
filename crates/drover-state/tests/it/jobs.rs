//! Host jobs of runs split across workers, on both backends: SQLite in a
//! temp dir, PostgreSQL on a real throwaway server (`drover-pgtest`).

use std::time::Duration;

use drover_state::{HostResult, JobState, Outcome, RunStatus};

use crate::support::{begin, result, Open};

/// Host `host`'s result in `run_id` as worker `by` records it.
fn result_by(run_id: i64, host: &str, by: &str) -> HostResult {
    HostResult {
        detail: format!("{{\"by\":\"{by}\"}}"),
        ..result(run_id, host, Outcome::Changed, drover_state::now_ms())
    }
}

/// Claims split the jobs between workers without overlap; a worker's
/// renewal keeps its jobs; jobs of a worker past its lease are claimed by
/// another, which is named as holder with the old one as `claimed_before`;
/// the old holder's late results are dropped; every host is recorded once.
/// A run whose controller is gone (locks released, run finished) offers no
/// jobs and counts none as unfinished.
fn jobs_are_claimed_once_and_reclaimed_after_the_lease(open: Open) {
    let mut s = open();
    let hosts: Vec<String> = (1..=5).map(|i| format!("h{i}")).collect();
    let run = begin(&mut s, "apply");
    let lock = s.lock_hosts(run, &hosts).unwrap();
    // Queued in two steps (as a rollout queues its batches): the spec is
    // the first call's.
    s.create_jobs(run, "{\"spec\":1}", &hosts[..2]).unwrap();
    assert_eq!(s.unfinished_jobs().unwrap(), 2);
    s.create_jobs(run, "{\"spec\":2}", &hosts[2..]).unwrap();
    assert_eq!(s.unfinished_jobs().unwrap(), 5);

    let long = Duration::from_secs(60);
    let short = Duration::from_millis(300);
    let a = s.claim_jobs("w1", 2, long).unwrap().unwrap();
    assert_eq!((a.run_id, a.spec.as_str(), a.hosts.clone()), (run, "{\"spec\":1}", vec!["h1".into(), "h2".into()]));
    let mut other = open(); // a second controller process
    let b = other.claim_jobs("w2", 10, short).unwrap().unwrap();
    assert_eq!(b.hosts, vec!["h3", "h4", "h5"]);
    assert_eq!(s.claim_jobs("w3", 10, long).unwrap(), None, "everything is held");
    assert_eq!(s.renew_jobs("w1", long).unwrap(), 2);

    std::thread::sleep(Duration::from_millis(500)); // w2 "died": its lease ran out
    let c = s.claim_jobs("w3", 10, long).unwrap().unwrap();
    assert_eq!(c.hosts, vec!["h3", "h4", "h5"], "only w2's expired jobs, not w1's renewed ones");
    assert_eq!(other.finish_jobs("w2", &[result_by(run, "h3", "w2")]).unwrap(), 0, "w2 lost h3");
    let done: Vec<_> = ["h3", "h4", "h5"].iter().map(|h| result_by(run, h, "w3")).collect();
    assert_eq!(s.finish_jobs("w3", &done).unwrap(), 3);
    assert_eq!(s.finish_jobs("w1", &[result_by(run, "h1", "w1"), result_by(run, "h2", "w1")]).unwrap(), 2);
    assert_eq!(s.unfinished_jobs().unwrap(), 0);

    let jobs = s.jobs(run).unwrap();
    assert!(jobs.iter().all(|j| j.state == JobState::Done && j.outcome == Some(Outcome::Changed)));
    let h3 = jobs.iter().find(|j| j.host == "h3").unwrap();
    assert_eq!((h3.claimed_by.as_deref(), h3.claimed_before.as_deref(), h3.claims), (Some("w3"), Some("w2"), 2));
    assert_eq!(h3.detail.as_deref(), Some("{\"by\":\"w3\"}"));
    let h1 = jobs.iter().find(|j| j.host == "h1").unwrap();
    assert_eq!((h1.claimed_by.as_deref(), h1.claimed_before.as_deref(), h1.claims), (Some("w1"), None, 1));
    let history: Vec<_> = s.history(None, 100).unwrap().into_iter().filter(|h| h.run_id == run).collect();
    assert_eq!(history.len(), 5);
    s.unlock_hosts(lock).unwrap();
    s.finish_run(run, RunStatus::Ok).unwrap();

    // A run whose controller is gone: nothing to claim, nothing to wait for.
    let dead = begin(&mut s, "apply");
    let lock = s.lock_hosts(dead, &hosts).unwrap();
    s.create_jobs(dead, "{}", &hosts).unwrap();
    s.unlock_hosts(lock).unwrap();
    s.finish_run(dead, RunStatus::Failed).unwrap();
    assert_eq!(s.claim_jobs("w1", 10, long).unwrap(), None);
    assert_eq!(s.unfinished_jobs().unwrap(), 0);
}

on_both!(
    jobs_are_claimed_once_and_reclaimed_after_the_lease: sqlite_jobs_are_claimed_once_and_reclaimed_after_the_lease,
    pg_jobs_are_claimed_once_and_reclaimed_after_the_lease
);
