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

use std::collections::hash_map::{Entry, HashMap};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use drover_spec::Host;
use drover_state::{Location, Store};
use serde::{Deserialize, Serialize};

use super::record;
use super::schedule::{natural_key, sessions};
use super::spec::{Overrides, RunSpec};
use crate::host::{HostReport, Mode, Outcome};
use crate::progress::Progress;
use crate::transport::sim::SimArgs;
use crate::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error(
        "--workers needs a shared PostgreSQL state store, and this project's is SQLite ({0}): workers on other machines cannot reach that file, and it cannot hand jobs to several controllers. Set `[state] url = \"postgres://…\"` in drover.toml or DROVER_STATE_URL (docs/operations.md, \"Shared state on PostgreSQL\")"
    )]
    NeedsPostgres(String),
    #[error("--workers: {0} is not supported with workers yet; run it without --workers")]
    Unsupported(&'static str),
    #[error(
        "run {run_id} was started from project revision {theirs}, but this worker's project ({dir}) is at {ours}: a worker must deploy what the run planned. Check out the same revision (or run the worker with -C pointing at it)"
    )]
    Revision { run_id: i64, dir: String, theirs: String, ours: String },
    #[error("run {run_id}: its work spec cannot be read ({reason}); was it recorded by another drover version?")]
    BadSpec { run_id: i64, reason: String },
}

fn store_lost(who: impl Into<String>, e: impl std::fmt::Display, in_flight: String) -> record::StoreLost {
    record::StoreLost { who: who.into(), reason: e.to_string(), in_flight }
}

/// What a worker needs to run a job the way the applying controller would
/// have: the run's deploy options. Stored as JSON with the run's jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkSpec {
    /// The project revision the run was planned from (see [`crate::store::project_rev`]).
    pub revision: String,
    /// `--simulate DIR` (absolute): simulated hosts instead of SSH.
    pub simulate: Option<PathBuf>,
    pub sim: SimSpec,
    pub retries: u32,
    pub op_timeout_ms: u64,
    pub confirm_timeout_ms: u64,
    pub parallel: usize,
    /// A rollout's `order = "stop-first"`.
    #[serde(default)]
    pub stop_first: bool,
}

/// The `--sim-*` flags, as recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SimSpec {
    pub latency: String,
    pub bandwidth: String,
    pub failure_rate: f64,
    pub processes: bool,
}

impl WorkSpec {
    /// The spec that runs hosts as `spec` would, at `dir`'s revision, on
    /// hosts simulated under `simulate` with links as `sim` describes.
    pub fn of_run(dir: &Path, spec: &RunSpec, simulate: Option<&Path>, sim: SimSpec) -> anyhow::Result<WorkSpec> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(WorkSpec {
            revision: crate::store::project_rev(dir),
            simulate: simulate.map(std::path::absolute).transpose()?,
            sim,
            retries: spec.job.retries,
            op_timeout_ms: ms(spec.job.timeouts.op),
            confirm_timeout_ms: spec.job.confirm_timeout.map_or(0, ms),
            parallel: spec.parallel,
            stop_first: spec.job.stop_first,
        })
    }

    fn run_spec(&self, project: drover_spec::Project) -> anyhow::Result<RunSpec> {
        let sim = SimArgs {
            sim_latency: self.sim.latency.clone(),
            sim_bandwidth: self.sim.bandwidth.clone(),
            sim_failure_rate: self.sim.failure_rate,
            sim_processes: self.sim.processes,
        };
        let transport = Transport::for_hosts(self.simulate.as_deref(), Some(&sim))?;
        let o = Overrides {
            parallel: Some(self.parallel),
            confirm_timeout: Some(Some(Duration::from_millis(self.confirm_timeout_ms)).filter(|d| !d.is_zero())),
            retries: Some(self.retries),
            op_timeout: Some(Duration::from_millis(self.op_timeout_ms)),
        };
        let mut spec = RunSpec::of_project(Arc::new(project), transport, Mode::Apply, &o);
        spec.job.stop_first = self.stop_first;
        Ok(spec)
    }
}

impl SimSpec {
    /// The unshaped links `rollout --simulate` uses.
    pub fn unshaped() -> SimSpec {
        SimSpec { latency: "0".into(), bandwidth: "0".into(), failure_rate: 0.0, processes: true }
    }
}

impl From<&SimArgs> for SimSpec {
    fn from(a: &SimArgs) -> SimSpec {
        SimSpec {
            latency: a.sim_latency.clone(),
            bandwidth: a.sim_bandwidth.clone(),
            failure_rate: a.sim_failure_rate,
            processes: a.sim_processes,
        }
    }
}

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
        // The run's parallelism is shared among its local workers, in
        // batches no larger than an even share, so every one of them gets
        // some.
        let parallel = self.spec.parallel.div_ceil(local.max(1)).max(1);
        let batch = hosts.len().div_ceil(local.max(1)).clamp(1, DEFAULT_BATCH.min(parallel));
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

/// How a `drover worker` behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs claimed at once.
    pub batch: i64,
    /// Hosts this worker runs at once (claimed batches in flight).
    pub parallel: usize,
    /// How long a claimed job stays this worker's without renewal.
    pub lease: Duration,
    /// Keep polling for new runs instead of exiting when none has work.
    pub follow: bool,
}

/// What a worker did.
#[derive(Debug, Default)]
pub struct WorkerSummary {
    pub id: String,
    pub hosts: u64,
    pub runs: std::collections::BTreeSet<i64>,
}

/// This worker's name in the store: machine and pid (unique while it lives).
pub fn worker_id() -> String {
    format!("{}:{}", drover_state::machine(), std::process::id())
}

/// `drover worker`: claim, run and record jobs of any open run until none
/// has unfinished jobs (or forever with `follow`). Jobs held by a live
/// worker count as unfinished: if it dies, they become claimable here.
///
/// Batches are pipelined: while hosts are in flight, the worker claims
/// more, up to `parallel` hosts at once (and the run's own `--parallel`),
/// so small batches keep the split among workers even without capping a
/// worker's concurrency at one batch, and a worker never takes more than
/// it works on. Each batch is recorded when it finishes.
pub fn work(dir: &Path, o: &WorkerOptions) -> anyhow::Result<WorkerSummary> {
    let id = worker_id();
    let mut store = crate::store::open(dir)?;
    let _renewer = Renewer::start(crate::store::open(dir)?, id.clone(), o.lease);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut prepared: HashMap<i64, Prepared> = HashMap::new();
    let mut summary = WorkerSummary { id: id.clone(), ..Default::default() };
    let (done_tx, done_rx) = mpsc::channel::<(i64, Vec<HostReport>)>();
    let (batch, mut in_flight, mut cap) = (o.batch.max(1) as usize, 0usize, o.parallel.max(1));
    // Set when the store fails: claim nothing more, let the hosts in flight
    // finish (cutting them off mid-transition would only leave the agents
    // to roll back), then stop.
    let mut lost: Option<drover_state::StateError> = None;
    let mut unrecorded = 0usize;
    loop {
        while in_flight < cap && lost.is_none() {
            let want = batch.min(cap - in_flight) as i64;
            let claim = match store.claim_jobs(&id, want, o.lease) {
                Ok(Some(claim)) => claim,
                Ok(None) => break,
                Err(e) => {
                    lost = Some(e);
                    break;
                }
            };
            let p = match prepared.entry(claim.run_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(prepare(dir, claim.run_id, &claim.spec)?),
            };
            cap = p.spec.parallel.min(o.parallel).max(1);
            in_flight += claim.hosts.len();
            let (hosts, unknown): (Vec<&String>, Vec<&String>) =
                claim.hosts.iter().partition(|h| p.hosts.contains_key(*h));
            let hosts: Vec<Host> = hosts.into_iter().map(|h| p.hosts[h].clone()).collect();
            let unknown: Vec<HostReport> = unknown
                .into_iter()
                .map(|h| {
                    let mut r = HostReport::new(h);
                    r.outcome = Outcome::Failed;
                    r.error = Some(format!("not in the inventory of the worker's project {}", dir.display()));
                    r
                })
                .collect();
            let (job, tx, run_id) = (p.spec.clone(), done_tx.clone(), claim.run_id);
            rt.spawn(async move {
                let mut reports = sessions(&job, hosts, Progress::new(0, false)).await;
                reports.extend(unknown);
                let _ = tx.send((run_id, reports));
            });
        }
        if in_flight == 0 {
            if let Some(e) = lost {
                let in_flight = format!(
                    "the {unrecorded} host(s) it had in flight finished their transitions, their results unrecorded"
                );
                return Err(store_lost(format!("worker {id}"), e, in_flight).into());
            }
            match store.unfinished_jobs() {
                Ok(0) if !o.follow => return Ok(summary),
                Ok(_) => {}
                Err(e) => lost = Some(e),
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // A finished batch; or, after a while, look for more jobs again.
        let Ok((run_id, reports)) = done_rx.recv_timeout(Duration::from_millis(200)) else { continue };
        in_flight -= reports.len();
        if lost.is_some() {
            unrecorded += reports.len();
            continue;
        }
        let results = reports.iter().map(|r| record::host_result(run_id, r)).collect::<anyhow::Result<Vec<_>>>()?;
        match store.finish_jobs(&id, &results) {
            Ok(n) => {
                summary.hosts += n;
                summary.runs.insert(run_id);
            }
            Err(e) => {
                unrecorded += results.len();
                lost = Some(e);
            }
        }
    }
}

/// A run as this worker runs it: the deploy job and the project's hosts.
struct Prepared {
    spec: Arc<RunSpec>,
    hosts: HashMap<String, Host>,
}

/// Load the project for a run's jobs: the same revision, the run's options.
fn prepare(dir: &Path, run_id: i64, spec: &str) -> anyhow::Result<Prepared> {
    let spec: WorkSpec =
        serde_json::from_str(spec).map_err(|e| WorkersError::BadSpec { run_id, reason: e.to_string() })?;
    let ours = crate::store::project_rev(dir);
    if ours != spec.revision {
        return Err(
            WorkersError::Revision { run_id, dir: dir.display().to_string(), theirs: spec.revision, ours }.into()
        );
    }
    let project = crate::store::load_project(dir)?;
    let hosts = project.hosts.iter().map(|h| (h.name.clone(), h.clone())).collect();
    Ok(Prepared { spec: Arc::new(spec.run_spec(project)?), hosts })
}

/// Renews the lease of every job this worker holds, every third of the
/// lease, on a connection of its own (the claiming one is busy for a whole
/// batch). Stops when dropped.
struct Renewer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    fn start(mut store: Store, id: String, lease: Duration) -> Renewer {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("drover-job-lease".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(lease / 3) {
                    if let Err(e) = store.renew_jobs(&id, lease) {
                        eprintln!("warning: worker {id}: renewing job leases failed: {e}");
                    }
                }
            })
            .expect("spawn the job lease thread");
        Renewer { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
