//! Runs split across controllers: `drover apply --workers N` records a run
//! as one job per host in the shared PostgreSQL store, and any number of
//! `drover worker` processes, on this machine or others, claim jobs in
//! batches, run each batch through the ordinary deploy pipeline
//! ([`super::schedule::sessions`]), and record the results. The applying
//! controller assembles its report from those results, so it has the same
//! shape as a single-controller run's.
//!
//! Why jobs in the database rather than a coordinator process: the store is
//! already shared and durable, `FOR UPDATE SKIP LOCKED` hands each job to
//! one claimer without anyone waiting, and a lease on every claimed job
//! (renewed by its worker from a thread of its own) means a worker that
//! dies only delays its jobs by one lease: they become claimable again.
//! A job re-run after its worker died mid-host is safe: the agent's lock and
//! journal keep the host whole, and re-applying the same desired state
//! finds it unchanged. A worker that lost its lease (stalled) has its late
//! results dropped: only the job's current holder records it.

mod spec;
mod worker;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use drover_state::{Location, Store};

use spec::store_lost;
pub use spec::{SimSpec, WorkSpec, WorkersError};
pub use worker::{work, worker_id, WorkerOptions, WorkerSummary};

use super::record;
use super::schedule::natural_key;
use crate::host::HostReport;

/// Refuse `--workers` on a SQLite store (before anything is recorded).
pub fn require_shared_store(dir: &Path) -> anyhow::Result<()> {
    match crate::store::location(dir)? {
        Location::Postgres(_) => Ok(()),
        Location::Sqlite(p) => Err(WorkersError::NeedsPostgres(p.display().to_string()).into()),
    }
}

/// `drover apply --workers N`: record the run and its jobs (locking its
/// hosts for the run, as any apply does), start `local` worker processes
/// (0: only external `drover worker`s do the work), wait until every job
/// is done, and return each host's report, in host order.
pub fn apply(
    dir: &Path,
    spec: &WorkSpec,
    hosts: &[String],
    local: usize,
    quiet: bool,
) -> anyhow::Result<Vec<HostReport>> {
    require_shared_store(dir)?;
    let mut run = record::Run::start(dir, "apply", hosts)?;
    let reports = Workers { dir: dir.to_path_buf(), spec: spec.clone(), local }.run(&mut run, hosts, quiet)?;
    run.finish(!reports.iter().any(|r| r.outcome.is_failure()))?;
    Ok(reports)
}

/// Hosts of a run handed to workers: `apply --workers` hands all at once,
/// a rollout one batch at a time (so its gates hold between batches).
#[derive(Debug, Clone)]
pub struct Workers {
    /// The project directory (local workers run in it).
    pub dir: PathBuf,
    pub spec: WorkSpec,
    /// Local worker processes to start for each hand-out (0: only
    /// `drover worker`s started elsewhere).
    pub local: usize,
}

impl Workers {
    /// Queue `hosts` as jobs of `run`, start the local workers, wait until
    /// every job of the run is done; the reports of `hosts`, in host order.
    pub fn run(&self, run: &mut record::Run, hosts: &[String], quiet: bool) -> anyhow::Result<Vec<HostReport>> {
        run.store.create_jobs(run.id, &serde_json::to_string(&self.spec)?, hosts)?;
        let local = self.local;
        if !quiet {
            eprintln!(
                "run {}: {} host jobs recorded in {}; {}",
                run.id,
                hosts.len(),
                run.store.describe(),
                if local == 0 {
                    "waiting for `drover worker` processes on that store".to_string()
                } else {
                    format!("starting {local} local worker(s)")
                }
            );
        }
        // The run's parallelism and its hosts are shared evenly among its
        // local workers: a worker holds at most its share of the hosts at
        // once, so the first to start cannot claim them all before the
        // others have connected (it claims more only as its hosts finish).
        let share = hosts.len().div_ceil(local.max(1));
        let parallel = self.spec.parallel.div_ceil(local.max(1)).min(share).max(1);
        let batch = share.clamp(1, DEFAULT_BATCH.min(parallel));
        let mut children =
            (0..local).map(|_| spawn_worker(&self.dir, batch, parallel)).collect::<std::io::Result<Vec<Child>>>()?;
        let reports = wait_for(&run.store, run.id, quiet);
        for c in &mut children {
            let _ = c.wait();
        }
        let mut reports = reports?;
        let wanted: std::collections::HashSet<&str> = hosts.iter().map(String::as_str).collect();
        reports.retain(|r| wanted.contains(r.host.as_str()));
        Ok(reports)
    }
}

/// Jobs a worker claims at once unless told otherwise.
pub const DEFAULT_BATCH: usize = 16;

fn spawn_worker(dir: &Path, batch: usize, parallel: usize) -> std::io::Result<Child> {
    std::process::Command::new(std::env::current_exe()?)
        .arg("-C")
        .arg(dir)
        .args(["worker", "--batch", &batch.to_string(), "--parallel", &parallel.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
}

/// Poll the run's jobs until all are done; their recorded reports.
fn wait_for(store: &Store, run_id: i64, quiet: bool) -> anyhow::Result<Vec<HostReport>> {
    let mut shown = usize::MAX;
    loop {
        let jobs = store.jobs(run_id).map_err(|e| {
            let in_flight = "the workers' hosts already changing finish their transitions (each agent's lock and journal keep a host whole), their results unrecorded".to_string();
            store_lost(format!("run {run_id}"), e, in_flight)
        })?;
        let done = jobs.iter().filter(|j| j.state == drover_state::JobState::Done).count();
        if !quiet && done != shown {
            eprintln!("run {run_id}: {done}/{} hosts done", jobs.len());
            shown = done;
        }
        if done == jobs.len() {
            let mut reports: Vec<HostReport> = jobs
                .iter()
                .map(|j| {
                    j.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_else(|| {
                        let mut r = HostReport::new(&j.host);
                        r.error = Some("its worker recorded no readable report".into());
                        r
                    })
                })
                .collect();
            reports.sort_by_cached_key(|r| natural_key(&r.host));
            return Ok(reports);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
