//! Driving a fleet: every selected host through connect → compare → ship →
//! activate → confirm, concurrently up to a limit, each with retries on
//! transient failures.
//!
//! Per host, the no-op path is two small messages: the manifest hash the
//! controller compiled, and the agent's "up to date". Only when that fails is
//! the manifest sent, and then only missing blobs travel, pipelined without a
//! round trip per file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, Facts, Hash, Manifest, Request, Response, ServiceAction, Supervisor};
use drover_spec::{Compiled, Host, Project, SpecError};
use tokio::sync::Semaphore;

use crate::link::LinkError;
use crate::phases::ms;
use crate::progress::{HostProgress, Progress};
use crate::report::{HostReport, Outcome};
use crate::ship::{self, ChunkCache};
use crate::transport::{Connection, Timeouts, Transport, TransportError};

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Read-only: the agent takes no lock, runs no recovery, writes nothing.
    Plan(crate::plan::PlanOptions),
    Apply,
    Rollback {
        to: Option<u64>,
    },
    /// Reboot, wait for the host to come back healthy (`drover reboot`).
    Reboot,
}

/// Where hosts' desired state comes from, and how its blobs are shipped: the
/// project (compiled per host and generation), or a bundle (`apply --bundle`:
/// manifests compiled at build time, blobs stored compressed), optionally
/// with peer relay for large blobs (`--relay`; see `commands::bundle`).
pub trait StateSource: Send + Sync {
    fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, String>;

    /// The request that makes `manifest` the host's candidate.
    fn diff_request(&self, _host: &Host, manifest: &Manifest, generation: u64) -> Request {
        Request::Diff { manifest: manifest.clone(), generation }
    }

    /// A blob's chunks as stored compressed (uncompressed offset, zstd
    /// bytes), from offset `from`; `None`: take it from `Compiled::blobs`.
    fn packed(&self, _hash: &Hash, _from: u64) -> Option<PackedChunks<'_>> {
        None
    }

    /// Peer relay for large blobs, when enabled.
    fn relay(&self) -> Option<&crate::commands::bundle::relay::Relay> {
        None
    }

    /// Facts a host reported, for compiling offline later (`bundle build`).
    /// Blocking: the runner calls it only when [`StateSource::facts_known`]
    /// says no.
    fn remember_facts(&self, _host: &Host, _facts: &Facts) {}

    /// Whether `remember_facts` has nothing to do for these (answered from
    /// memory): saves a no-op host handing its runtime thread over to
    /// blocking work, which costs a thread wake-up and a context switch per
    /// host. `false` (always call it) unless a source knows better.
    fn facts_known(&self, _host: &Host, _facts: &Facts) -> bool {
        false
    }

    /// The services whose instances `plan` reports moves of.
    fn services(&self) -> std::collections::BTreeSet<String> {
        Default::default()
    }
}

pub type PackedChunks<'a> = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), String>> + Send + 'a>;

impl StateSource for Project {
    fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, String> {
        Project::compile(self, host, facts, generation).map_err(|e| format!("{:?}", miette::Report::new(e)))
    }

    fn services(&self) -> std::collections::BTreeSet<String> {
        self.endpoints().map(|e| e.keys().cloned().collect()).unwrap_or_default()
    }

    /// Cached in the project's state store (see [`crate::fact_cache`]).
    fn remember_facts(&self, host: &Host, facts: &Facts) {
        crate::fact_cache::remember(&self.dir, &host.name, facts);
    }

    fn facts_known(&self, host: &Host, facts: &Facts) -> bool {
        crate::fact_cache::unchanged(&self.dir, &host.name, facts)
    }
}

#[derive(Clone)]
pub struct Job {
    pub project: Arc<dyn StateSource>,
    pub transport: Transport,
    pub mode: Mode,
    pub timeouts: Timeouts,
    /// 0 disables magic rollback.
    pub confirm_timeout: Duration,
    pub parallel: usize,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// Stop restarting services before the swap (rollout order).
    pub stop_first: bool,
    /// Reboot (these) hosts after activation; confirm after the reboot.
    pub reboot: Option<crate::reboot::RebootPlan>,
    /// The run's host-lock lease: once it is lost (its store went away),
    /// no more hosts are started; those already started finish.
    pub fence: drover_state::LeaseWatch,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeployError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{0}")]
    Spec(String),
    #[error("{0}")]
    Other(String),
}

impl DeployError {
    fn is_transient(&self) -> bool {
        match self {
            DeployError::Transport(e) => e.is_transient(),
            DeployError::Link(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl Job {
    /// The same settings for another goal (rollouts apply, then may revert).
    pub fn clone_for(&self, mode: Mode) -> Job {
        Job { mode, ..self.clone() }
    }
}

/// Compile every host once with placeholder facts before touching any: a
/// template error must stop the run with nothing applied anywhere.
#[allow(clippy::result_large_err)] // see drover-spec: SpecError carries its source text
pub fn preflight(project: &Project, hosts: &[Host]) -> Result<(), SpecError> {
    let facts = Facts { supervisor: Some(Supervisor::Runit), ..Default::default() };
    for h in hosts {
        project.compile(h, &facts, 1)?;
    }
    Ok(())
}

pub async fn run(job: Arc<Job>, hosts: Vec<Host>, progress: Progress) -> Vec<HostReport> {
    let sem = Arc::new(Semaphore::new(job.parallel.max(1)));
    // One per run: every host's copy of a blob is compressed once.
    let chunks = Arc::new(ChunkCache::new(ship::CACHE_BYTES));
    let mut tasks = Vec::with_capacity(hosts.len());
    for host in hosts {
        let (job, sem, progress, chunks) = (job.clone(), sem.clone(), progress.clone(), chunks.clone());
        let name = host.name.clone();
        tasks.push((
            name,
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let hp = progress.host(&host.name);
                if let Some(why) = job.fence.lost() {
                    hp.finish(false);
                    let mut r = HostReport::new(&host.name);
                    r.outcome = Outcome::Skipped;
                    r.error = Some(format!("not started: {why}"));
                    return r;
                }
                let report = run_host(&job, &chunks, &host, &hp).await;
                hp.finish(report.outcome.is_failure());
                report
            }),
        ));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (name, t) in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => {
                progress.host(&name).finish(true);
                let mut r = HostReport::new(&name);
                r.outcome = Outcome::Failed;
                r.error = Some(crate::tasks::failure(e));
                out.push(r);
            }
        }
    }
    out.sort_by_cached_key(|r| natural_key(&r.host));
    out
}

/// Sort h2 before h10.
pub(crate) fn natural_key(s: &str) -> (String, u64, String) {
    let i = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let j = s[i..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |k| i + k);
    (s[..i].to_string(), s[i..j].parse().unwrap_or(0), s[j..].to_string())
}

async fn run_host(job: &Job, chunks: &ChunkCache, host: &Host, p: &HostProgress) -> HostReport {
    let start = Instant::now();
    let mut r = HostReport::new(&host.name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        r.attempts = attempt;
        match run_once(job, chunks, host, &mut r, p).await {
            Ok(()) => break,
            Err(e) if e.is_transient() && attempt <= job.retries => {
                p.step(format!("retrying after: {e}"));
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                let unreachable = matches!(&e, DeployError::Transport(TransportError::Ssh(s)) if s.is_transient());
                r.outcome = if unreachable { Outcome::Unreachable } else { Outcome::Failed };
                r.error = Some(e.to_string());
                break;
            }
        }
    }
    r.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    r
}

/// Exponential backoff with jitter, so a fleet that lost its network does not
/// reconnect in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64 << attempt.min(6);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Duration::from_millis(base + u64::from(nanos) % base)
}

fn compile(job: &Job, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, DeployError> {
    job.project.compile(host, facts, generation).map_err(DeployError::Spec)
}

async fn run_once(
    job: &Job,
    chunks: &ChunkCache,
    host: &Host,
    r: &mut HostReport,
    p: &HostProgress,
) -> Result<(), DeployError> {
    p.step("connecting");
    let mut conn = match job.mode {
        Mode::Plan(_) => job.transport.connect_read_only(host, job.timeouts).await?,
        _ => job.transport.connect(host, job.timeouts).await?,
    };
    r.phases.connect_ms += ms(conn.connect_time);
    r.phases.hello_ms += ms(conn.hello_time);
    let clock = Instant::now();
    if !job.project.facts_known(host, &conn.facts) {
        tokio::task::block_in_place(|| job.project.remember_facts(host, &conn.facts));
    }
    r.recovered = conn.state.recovered.clone();
    r.revert_errors = conn.state.revert_errors.clone();
    r.generation = conn.state.current;
    let confirm_ms = u64::try_from(job.confirm_timeout.as_millis()).unwrap_or(u64::MAX);
    let outcome = match job.mode {
        Mode::Reboot => return crate::reboot::reboot_only(job, host, conn, r, p).await,
        Mode::Rollback { to } => {
            p.step("rolling back");
            conn.link.set_timeout(apply_timeout(job));
            let clock = Instant::now();
            let req = Request::Rollback { to, confirm_timeout_ms: confirm_ms };
            let outcome = conn.link.call(&req, &mut |m| p.step(m)).await?;
            add_activation(r, clock, &outcome);
            outcome
        }
        Mode::Plan(_) | Mode::Apply => {
            let desired = desired_state(job, host, &mut conn, p).await;
            r.phases.diff_ms += ms(clock.elapsed());
            let compiled = match desired? {
                Desired::UpToDate => {
                    r.outcome = Outcome::Unchanged;
                    conn.close().await;
                    return Ok(());
                }
                // An earlier attempt activated exactly this; it only lacks the
                // confirmation (this is a new connection, so give it).
                Desired::AwaitingConfirm(generation) if matches!(job.mode, Mode::Apply) => {
                    let clock = Instant::now();
                    let confirmed = conn.link.call(&Request::Confirm { generation }, &mut |_| {}).await;
                    r.phases.confirm_ms += ms(clock.elapsed());
                    confirmed?;
                    conn.close().await;
                    r.generation = Some(generation);
                    r.outcome = Outcome::Changed;
                    return Ok(());
                }
                Desired::AwaitingConfirm(_) => compile(job, host, &conn.facts, conn.state.next)?,
                Desired::Change(c) => c,
            };
            let generation = conn.state.next;
            p.step("comparing");
            let clock = Instant::now();
            let req = job.project.diff_request(host, &compiled.manifest, generation);
            let diff = conn.link.call(&req, &mut |m| p.step(m)).await;
            r.phases.diff_ms += ms(clock.elapsed());
            let Response::Diff { changes, restarts, missing, setup } = diff? else {
                return Err(DeployError::Other("unexpected reply to Diff".into()));
            };
            r.changes = changes;
            r.setup = setup;
            r.restarts = restarts
                .iter()
                .map(|s| {
                    if s.action == ServiceAction::Restart {
                        s.name.clone()
                    } else {
                        format!("{}:{}", s.name, s.action.as_str())
                    }
                })
                .collect();
            if let Mode::Plan(opts) = job.mode {
                if opts.diff {
                    r.diffs = Some(crate::plan::host_diffs(&*job.project, &mut conn, &compiled, &r.changes, p).await?);
                }
                // Packages to install or accounts to create change no path.
                let nothing = r.changes.is_empty() && r.restarts.is_empty() && r.setup.is_empty();
                r.outcome = if nothing { Outcome::Unchanged } else { Outcome::Planned };
                conn.close().await;
                return Ok(());
            }
            let clock = Instant::now();
            let shipper = ship::Shipper { source: &*job.project, chunks };
            let sent = shipper.send_all(host, &mut conn, &compiled, &missing, r, p).await;
            r.phases.send_ms += ms(clock.elapsed());
            sent?;
            p.step("applying");
            conn.link.set_timeout(apply_timeout(job));
            let clock = Instant::now();
            let req = Request::Apply { confirm_timeout_ms: confirm_ms, stop_first: job.stop_first };
            let outcome = conn.link.call(&req, &mut |m| p.step(m)).await?;
            add_activation(r, clock, &outcome);
            outcome
        }
    };
    if let Some(plan) = job.reboot.as_ref().filter(|plan| plan.applies(host)) {
        if let Response::Applied(ApplyOutcome::Activated { generation, restarted, files_written, .. }) = outcome {
            r.files_written = files_written;
            r.restarts = restarted;
            return crate::reboot::after_activation(job, host, plan, conn, generation, r, p).await;
        }
    }
    conn.close().await;
    finish(job, host, outcome, r, p).await
}

/// Split the `Apply`/`Rollback` round trip that began at `clock` into the
/// activate, restart and health phases (see [`crate::phases`]).
fn add_activation(r: &mut HostReport, clock: Instant, outcome: &Response) {
    let times = match outcome {
        Response::Applied(ApplyOutcome::Activated { times, .. } | ApplyOutcome::RolledBack { times, .. }) => *times,
        _ => Default::default(),
    };
    r.phases.add_activation(clock.elapsed(), &times);
}

fn apply_timeout(job: &Job) -> Duration {
    (job.timeouts.op * 10).max(Duration::from_secs(300))
}

enum Desired {
    UpToDate,
    AwaitingConfirm(u64),
    Change(Compiled),
}

/// What the host should become, and whether it already is.
///
/// Templates may show `generation`. A file must not change just because
/// another file did (that would resend it and restart its services), so
/// `generation` means "the generation in which this file last changed": a
/// templated file whose generation-independent `source` hash is what the host
/// already has is kept exactly as the host has it.
async fn desired_state(
    job: &Job,
    host: &Host,
    conn: &mut Connection,
    p: &HostProgress,
) -> Result<Desired, DeployError> {
    let next = compile(job, host, &conn.facts, conn.state.next)?;
    let (Some(cur), Some(cur_hash)) = (conn.state.current, conn.state.current_manifest) else {
        return Ok(Desired::Change(next));
    };
    let uses_generation = next.manifest.entries.iter().any(|e| e.source.is_some());
    let desired = if next.manifest.hash() == cur_hash || !uses_generation {
        next
    } else {
        p.step("reading current manifest");
        match conn.link.call(&Request::CurrentManifest, &mut |_| {}).await? {
            Response::CurrentManifest(Some(current)) => keep_unchanged_sources(next, &current),
            _ => next,
        }
    };
    if desired.manifest.hash() != cur_hash {
        return Ok(Desired::Change(desired));
    }
    if conn.state.pending_confirm == Some(cur) {
        return Ok(Desired::AwaitingConfirm(cur));
    }
    p.step("checking");
    match conn.link.call(&Request::Check { manifest: cur_hash }, &mut |_| {}).await? {
        Response::Check { up_to_date: true, .. } => Ok(Desired::UpToDate),
        Response::Check { .. } => Ok(Desired::Change(desired)),
        other => Err(DeployError::Other(format!("unexpected reply to Check: {other:?}"))),
    }
}

/// Templated entries whose source (and attributes) the host already has keep
/// the host's rendering; the host holds its blob.
fn keep_unchanged_sources(mut next: Compiled, current: &drover_proto::Manifest) -> Compiled {
    for e in &mut next.manifest.entries {
        let Some(c) = current.entry(&e.path) else { continue };
        if e.source.is_some() && c.source == e.source && c.mode == e.mode && c.owner == e.owner && c.group == e.group {
            *e = c.clone();
        }
    }
    next
}

async fn finish(
    job: &Job,
    host: &Host,
    outcome: Response,
    r: &mut HostReport,
    p: &HostProgress,
) -> Result<(), DeployError> {
    match outcome {
        Response::Applied(ApplyOutcome::Activated { generation, restarted, files_written, .. }) => {
            r.generation = Some(generation);
            r.files_written = files_written;
            r.restarts = restarted;
            if !job.confirm_timeout.is_zero() {
                p.step("confirming over a new connection");
                let clock = Instant::now();
                let confirmed = confirm(job, host, generation).await;
                r.phases.confirm_ms += ms(clock.elapsed());
                confirmed?;
            }
            r.outcome = Outcome::Changed;
        }
        Response::Applied(ApplyOutcome::UpToDate { generation }) => {
            r.generation = Some(generation);
            r.outcome = Outcome::Unchanged;
        }
        Response::Applied(ApplyOutcome::RolledBack { failed, to, reason, revert_errors, .. }) => {
            r.generation = to;
            r.revert_errors.extend(revert_errors);
            r.outcome = Outcome::RolledBack;
            r.error = Some(format!("generation {failed} failed and was rolled back: {reason}"));
        }
        other => return Err(DeployError::Other(format!("unexpected reply: {other:?}"))),
    }
    Ok(())
}

/// Confirm over a fresh connection: proof that a new SSH login still works
/// after the change. Retried until shortly before the agent's deadline.
async fn confirm(job: &Job, host: &Host, generation: u64) -> Result<(), DeployError> {
    let deadline = Instant::now() + job.confirm_timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res: Result<(), DeployError> = async {
            let mut c = job.transport.connect(host, job.timeouts).await?;
            c.link.call(&Request::Confirm { generation }, &mut |_| {}).await?;
            c.close().await;
            Ok(())
        }
        .await;
        match res {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && Instant::now() + backoff(attempt) < deadline => tokio::time::sleep(backoff(attempt)).await,
            Err(e) => {
                return Err(DeployError::Other(format!(
                    "generation {generation} is live but could not be confirmed over a new connection ({e}); the host reverts it by itself"
                )))
            }
        }
    }
}
