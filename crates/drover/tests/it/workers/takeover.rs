//! Workers sharing a run: one killed while it holds jobs (the others take
//! them over), and one at another project revision (it refuses).

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::{queue_for_workers, worker, LIMIT};
use crate::support::{sim_project as project, wait_until, Run};

/// 200 simulated hosts, one run, three worker processes; one is SIGKILLed
/// while it holds jobs. Its jobs are claimed again once their lease
/// expired, every host ends converged exactly once (one successful
/// generation; only a host the kill interrupted mid-apply also has that
/// attempt, marked failed and reverted by the agent), the run's history
/// holds every host once, the report has all 200, and the surviving
/// workers exit on their own.
#[test]
fn three_workers_one_killed_every_host_converged_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 200);
    let hosts = tmp.path().join("hosts");
    let url = drover_pgtest::shared().fresh_db();

    let (apply, store, run_id) = queue_for_workers(&proj, &hosts, &url, &["--sim-latency", "40ms"], 200, Stdio::piped);

    let mut workers: Vec<Child> = (0..3).map(|_| worker(&proj, &url)).collect();
    let victim = format!("{}:{}", drover_state::machine(), workers[0].id());
    wait_until("the victim holding jobs after some hosts are done", LIMIT, || {
        let jobs = store.jobs(run_id).ok()?;
        let done = jobs.iter().filter(|j| j.state == drover_state::JobState::Done).count();
        let held: Vec<String> = jobs
            .iter()
            .filter(|j| j.state == drover_state::JobState::Claimed && j.claimed_by.as_deref() == Some(victim.as_str()))
            .map(|j| j.host.clone())
            .collect();
        (done >= 20 && !held.is_empty()).then_some(())
    });
    workers[0].kill().unwrap(); // SIGKILL
    workers[0].wait().unwrap();
    // What it held once dead (a batch it finished or claimed between the
    // look above and the kill is counted as it ended up).
    let held: Vec<String> = store
        .jobs(run_id)
        .unwrap()
        .into_iter()
        .filter(|j| j.state == drover_state::JobState::Claimed && j.claimed_by.as_deref() == Some(victim.as_str()))
        .map(|j| j.host)
        .collect();
    assert!(!held.is_empty(), "the killed worker held jobs when it died");

    let out = Run::from(apply.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let reports = out.hosts();
    assert_eq!(reports.len(), 200, "{}", out.stderr);
    let mut seen = std::collections::BTreeSet::new();
    for h in &reports {
        assert!(seen.insert(h["host"].as_str().unwrap().to_string()), "host reported twice: {h:#}");
        // A host the victim had finished but not recorded is found
        // unchanged by the worker that takes its job over.
        assert!(h["outcome"] == "changed" || h["outcome"] == "unchanged", "{h:#}");
    }
    for w in workers.drain(1..) {
        let out = Run::from(w.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "a surviving worker exits 0 when the run is done: {}", out.stderr);
    }

    // Converged exactly once: one successful generation per host. The only
    // other generation a host may have is an attempt the SIGKILL cut short
    // on a host the killed worker held, which the agent's recovery marked
    // failed and reverted before the job's new holder applied it again.
    let mut interrupted = vec![];
    for i in 1..=200 {
        let name = format!("s{i}");
        let state = hosts.join(&name).join("var/lib/drover");
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
        let current = st["current"].as_u64().unwrap();
        let failed: Vec<u64> = st["failed"].as_array().unwrap().iter().map(|g| g.as_u64().unwrap()).collect();
        let gens: Vec<u64> = std::fs::read_dir(state.join("gens"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".manifest")?.parse().ok())
            .collect();
        let ok: Vec<u64> = gens.iter().copied().filter(|g| !failed.contains(g)).collect();
        assert_eq!(ok, vec![current], "{name}: one successful generation, the current one: {st}");
        if gens.len() > 1 {
            assert!(held.contains(&name), "{name} was not the killed worker's, yet has {gens:?}: {st}");
            assert_eq!(gens.len(), 2, "{name}: at most one interrupted attempt: {st}");
            interrupted.push(name.clone());
        }
        let page = std::fs::read_to_string(hosts.join(format!("{name}/srv/site/index.html"))).unwrap();
        assert!(page.contains(&name), "{name}'s page names it: {page}");
    }

    // The run's history holds every host, once.
    let history: Vec<_> = store.history(None, 100_000).unwrap().into_iter().filter(|h| h.run_id == run_id).collect();
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for h in &history {
        *per_host.entry(h.host.clone()).or_default() += 1;
    }
    assert_eq!(per_host.len(), 200);
    assert!(per_host.values().all(|n| *n == 1));
    let run = store.runs(5).unwrap().into_iter().find(|r| r.id == run_id).unwrap();
    assert_eq!(run.status, drover_state::RunStatus::Ok);

    // The killed worker's jobs were re-claimed after the lease, by others.
    let jobs = store.jobs(run_id).unwrap();
    assert!(jobs.iter().all(|j| j.state == drover_state::JobState::Done));
    for host in &held {
        let j = jobs.iter().find(|j| &j.host == host).unwrap();
        assert_ne!(j.claimed_by.as_deref(), Some(victim.as_str()), "{j:?}");
        assert!(j.claims >= 2, "{j:?}");
        // Claimed twice: the victim, then its taker. (A starved survivor
        // can lose a lease too, and a third claimer take it from there.)
        if j.claims == 2 {
            assert_eq!(j.claimed_before.as_deref(), Some(victim.as_str()), "{j:?}");
        }
    }
    let by: std::collections::BTreeSet<_> = jobs.iter().filter_map(|j| j.claimed_by.clone()).collect();
    assert!(by.len() >= 2, "the work was split: {by:?}");
    let taken_over: Vec<_> = reports.iter().filter(|h| held.iter().any(|x| h["host"] == x.as_str())).collect();
    eprintln!(
        "{} jobs taken over from the killed worker: {} changed, {} already done by it (unchanged), {} interrupted mid-apply and reverted by the agent first",
        taken_over.len(),
        taken_over.iter().filter(|h| h["outcome"] == "changed").count(),
        taken_over.iter().filter(|h| h["outcome"] == "unchanged").count(),
        interrupted.len()
    );
}

/// A worker whose project is not at the run's revision refuses to run its
/// jobs (naming both revisions) and leaves them for a worker that is; a
/// run whose controller died is not carried out by a worker started later.
#[test]
fn a_worker_refuses_another_revision_and_ignores_runs_whose_controller_died() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 5);
    let toml = proj.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!(
            "{text}
[state]
lock-lease = \"1s\"\n"
        ),
    )
    .unwrap();
    let hosts = tmp.path().join("hosts");
    let url = drover_pgtest::shared().fresh_db();
    let (mut apply, _store, run_id) = queue_for_workers(&proj, &hosts, &url, &[], 5, Stdio::null);

    let tpl = proj.join("layers/site/srv/site/index.html.j2");
    let original = std::fs::read_to_string(&tpl).unwrap();
    std::fs::write(&tpl, format!("{original}\n<!-- edited after the run started -->\n")).unwrap();
    let refused = Run::from(worker(&proj, &url).wait_with_output().unwrap());
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains(&format!("run {run_id} was started from project revision")), "{}", refused.stderr);
    assert!(refused.stderr.contains("Check out the same revision"), "{}", refused.stderr);
    assert!(!hosts.exists(), "no host was touched");

    // The controller dies: its host locks go with it (no lease renewal),
    // and a worker started afterwards has nothing to do.
    apply.kill().unwrap();
    apply.wait().unwrap();
    std::fs::write(&tpl, original).unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // the 1s lease of its host locks
    let idle = Run::from(worker(&proj, &url).wait_with_output().unwrap());
    assert_eq!(idle.code, 0, "{}", idle.stderr);
    assert!(idle.stderr.contains("0 host(s) done"), "{}", idle.stderr);
    assert!(!hosts.exists(), "no host was touched");
}
