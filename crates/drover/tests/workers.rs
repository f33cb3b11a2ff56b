//! Runs split across controllers (`apply --workers`, `drover worker`) on a
//! real PostgreSQL server (`drover-pgtest`) and simulated hosts, through
//! the real binary: no root and no lab needed.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_state::Store;
use support::{sim_project as project, Run, DROVER};

fn worker(proj: &Path, url: &str) -> Child {
    Command::new(DROVER)
        .arg("-C")
        .arg(proj)
        .args(["worker", "--state", url, "--batch", "10", "--parallel", "20", "--lease", "3s"])
        .env_remove("DROVER_STATE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `apply --json --workers 0` on simulated hosts (failures off, `extra`
/// flags added), left running; once its `n` jobs are queued: the process,
/// a store client and the run's id.
fn queue_for_workers(
    proj: &Path,
    hosts: &Path,
    url: &str,
    extra: &[&str],
    n: usize,
    output: fn() -> Stdio,
) -> (Child, Store, i64) {
    let apply = Command::new(DROVER)
        .arg("-C")
        .arg(proj)
        .args(["apply", "--json", "--workers", "0", "--sim-failure-rate", "0"])
        .args(extra)
        .arg("--simulate")
        .arg(hosts)
        .env("DROVER_STATE_URL", url)
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap();
    let store = Store::connect(url).unwrap();
    let run_id = until("the run's jobs", || {
        let r = store.runs(1).ok()?.into_iter().next()?;
        (store.jobs(r.id).ok()?.len() == n).then_some(r.id)
    });
    (apply, store, run_id)
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    until("the victim holding jobs after some hosts are done", || {
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
/// second apply through workers finds everything unchanged.
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
                    "20ms",
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

/// What one simulated host's agent state says after a run: its current
/// generation (none if never applied), its failed ones, and whether a
/// transition or an activation was left open.
struct HostGens {
    current: Option<u64>,
    failed: usize,
    open: bool,
}

fn host_gens(hosts: &Path, name: &str) -> HostGens {
    let state = hosts.join(name).join("var/lib/drover");
    let open = state.join("journal.json").exists() || state.join("pending.json").exists();
    let Ok(text) = std::fs::read_to_string(state.join("state.json")) else {
        return HostGens { current: None, failed: 0, open };
    };
    let st: serde_json::Value = serde_json::from_str(&text).unwrap();
    HostGens { current: st["current"].as_u64(), failed: st["failed"].as_array().map_or(0, Vec::len), open }
}

/// The database stops (an immediate shutdown) mid-run, with 30 of 200
/// hosts converged; `workers` splits the run across two local workers.
/// Nothing more is started, the hosts in flight finish (no host is left
/// mid-transition or with a failed attempt), and the run exits 2 naming the
/// store without its password and saying what to do. Once the database is
/// back, the same command converges the rest: hosts the cut run finished
/// are found unchanged, every host has exactly one generation, and the new
/// run's history holds every host. What the cut run printed is returned.
fn lose_the_database_mid_run(workers: bool) -> (Run, Vec<String>) {
    const N: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), N);
    let toml = proj.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[state]\nlock-lease = \"2s\"\n")).unwrap();
    let hosts = tmp.path().join("hosts");
    let pg = drover_pgtest::PgCluster::start();
    let plain = pg.fresh_db();
    // Trust authentication ignores it; the error must not show it.
    let url = plain.replace("postgres@", "postgres:s3cret-pw@");
    let apply = || {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(&proj).args(["apply", "--json", "--parallel", "20", "--sim-latency", "40ms"]);
        if workers {
            c.args(["--workers", "2"]);
        }
        c.args(["--sim-failure-rate", "0", "--simulate"])
            .arg(&hosts)
            .env("DROVER_STATE_URL", &url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let converged_now = || (1..=N).filter(|i| host_gens(&hosts, &format!("s{i}")).current == Some(1)).count();

    let cut = apply();
    until("30 hosts converged", || (converged_now() >= 30).then_some(()));
    pg.stop();
    let out = Run::from(cut.wait_with_output().unwrap());
    assert_eq!(out.code, 2, "hosts may have changed, the run is cut short: exit 2\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("lost the state store mid-run"), "{}", out.stderr);
    assert!(out.stderr.contains("run the same command again"), "says what to do: {}", out.stderr);
    assert!(out.stderr.contains(&format!("127.0.0.1:{}", pg.port())), "names the store: {}", out.stderr);
    assert!(!out.stderr.contains("s3cret-pw"), "never the password: {}", out.stderr);
    eprintln!("the cut run said:\n{}", out.stderr.lines().rev().take(4).collect::<Vec<_>>().join("\n"));

    let mut converged = vec![];
    for i in 1..=N {
        let name = format!("s{i}");
        let g = host_gens(&hosts, &name);
        assert!(!g.open && g.failed == 0, "{name} was left mid-transition or reverted");
        match g.current {
            Some(1) => converged.push(name),
            None => {}
            Some(other) => panic!("{name} is at generation {other}"),
        }
    }
    assert!(converged.len() >= 30, "the hosts done before the cut stay done: {}", converged.len());
    assert!(converged.len() < N, "no more hosts were started: some never were");

    pg.restart();
    std::thread::sleep(Duration::from_millis(2500)); // the cut run's 2s host-lock lease
    let again = Run::from(apply().wait_with_output().unwrap());
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let reports = again.hosts();
    assert_eq!(reports.len(), N);
    for h in &reports {
        let name = h["host"].as_str().unwrap();
        let want = if converged.iter().any(|c| c == name) { "unchanged" } else { "changed" };
        assert_eq!(h["outcome"], want, "{h:#}");
        let g = host_gens(&hosts, name);
        assert!(g.current == Some(1) && g.failed == 0 && !g.open, "{name}: one generation");
    }
    let store = Store::connect(&plain).unwrap();
    let run = store.runs(1).unwrap().remove(0);
    assert_eq!(run.status, drover_state::RunStatus::Ok);
    assert_eq!(store.history(None, 100_000).unwrap().iter().filter(|h| h.run_id == run.id).count(), N);
    (out, converged)
}

/// [`lose_the_database_mid_run`] with two local workers: they claim no more
/// jobs once the store is gone.
#[test]
fn the_database_lost_mid_run_stops_claiming_lets_hosts_finish_and_the_next_run_resumes() {
    lose_the_database_mid_run(true);
}

/// [`lose_the_database_mid_run`] with a plain apply: its host-lock lease
/// cannot be renewed, so it starts no more hosts (another controller may
/// take them once the lease ran out), and it still prints its whole report:
/// every host, the ones it did not start as skipped with the reason.
#[test]
fn a_plain_apply_that_loses_its_database_starts_no_more_hosts_and_still_reports_every_host() {
    let (out, converged) = lose_the_database_mid_run(false);
    let reports = out.hosts();
    assert_eq!(reports.len(), 200, "{}", out.stdout);
    for h in &reports {
        let name = h["host"].as_str().unwrap();
        if converged.iter().any(|c| c == name) {
            assert_eq!(h["outcome"], "changed", "{h:#}");
        } else {
            assert_eq!(h["outcome"], "skipped", "{h:#}");
            assert!(h["error"].as_str().unwrap().starts_with("not started: "), "{h:#}");
        }
    }
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
