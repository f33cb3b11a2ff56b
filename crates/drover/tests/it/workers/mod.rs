//! Runs split across controllers (`apply --workers`, `drover worker`) on a
//! real PostgreSQL server (`drover-pgtest`) and simulated hosts, through
//! the real binary: no root and no lab needed.
//!
//! By topic: workers taking over from a killed one (`takeover`), local
//! workers started by `apply --workers` (`local`, rollouts too), and the
//! database lost mid-run (`lost_store`).

mod local;
mod lost_store;
mod takeover;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drover_state::Store;

use crate::support::{wait_until, DROVER};

/// How long a test waits for progress of the workers it expects.
const LIMIT: Duration = Duration::from_secs(120);

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
    let run_id = wait_until("the run's jobs", LIMIT, || {
        let r = store.runs(1).ok()?.into_iter().next()?;
        (store.jobs(r.id).ok()?.len() == n).then_some(r.id)
    });
    (apply, store, run_id)
}
