//! The state database lost mid-run: nothing more starts, the hosts in
//! flight finish, and the next run converges the rest.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_state::Store;

use super::LIMIT;
use crate::support::{sim_project as project, wait_until, Run, DROVER};

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
    wait_until("30 hosts converged", LIMIT, || (converged_now() >= 30).then_some(()));
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
