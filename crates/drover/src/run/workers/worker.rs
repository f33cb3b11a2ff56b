//! `drover worker`: claim a batch of any open run's jobs, run it through the
//! scheduler, record the results, repeat; leases renewed from a thread of
//! its own.

use std::collections::hash_map::{Entry, HashMap};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use drover_spec::Host;
use drover_state::Store;

use super::spec::{store_lost, WorkSpec, WorkersError};
use crate::host::{HostReport, Outcome};
use crate::progress::Progress;
use crate::run::record;
use crate::run::schedule::sessions;
use crate::run::spec::RunSpec;

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
