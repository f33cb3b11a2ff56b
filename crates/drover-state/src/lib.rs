//! The state store: runs, per-host results, host locks, facts, drain marks,
//! rollouts, open alerts, worker jobs and the audit log, behind one API
//! ([`Store`]) with two backends, and the states those rows carry
//! ([`RunStatus`], [`RolloutStatus`], [`JobState`], [`Outcome`]).
//!
//! It must not import the controller (`drover`) or any other drover crate:
//! what it stores for them (a rollout's plan, a run's work spec, a host's
//! full report) is JSON it does not read. It has no async API and takes no
//! tokio dependency: every call blocks, and the PostgreSQL client's own
//! small runtime lives on the connection's thread, never on the caller's.
//! Its database crates stay private (callers see plain structs and enums).
//!
//! Why a store at all: every run must be recorded durably and queried per
//! host (`history`, `status`), a second controller must be refused while the
//! first holds hosts, and an interrupted rollout must be resumable.
//!
//! - **SQLite** (`.drover/state.db`, the default): one operator on one
//!   machine; no server. Host locks name the holder's pid and are taken over
//!   when that process is gone.
//! - **PostgreSQL** (`[state] url = "postgres://…"` or `DROVER_STATE_URL`):
//!   a team, CI and `drover serve` sharing one record. Host locks carry a
//!   lease renewed by the holder and are taken over only once it expired
//!   (a pid means nothing on another machine).
//!
//! The backends sit behind the [`Backend`] trait (a boxed trait object, not
//! an enum): callers keep `Store`'s methods, the SQL of each database stays
//! in its own module, and the copy between them (`drover state migrate`)
//! is written once against the trait. Each backend has its own ordered
//! migrations. Database crates stay inside this crate: callers see plain
//! structs.

mod backend;
mod copy;
mod location;
mod pg;
mod sqlite;
mod states;
mod types;

use std::path::Path;
use std::time::Duration;

pub use backend::Backend;
pub use copy::{copy, CopyCounts};
pub use location::{redact_url, Location};
pub use states::{JobState, Outcome, RolloutStatus, RunStatus, UnknownState};
pub use types::{
    AuditEntry, Claim, HostLock, HostResult, JobRow, LeaseWatch, LockHolder, NewRun, OpenAlert, Rollout, RunRow,
    RunTotal, Snapshot,
};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    /// See [`StateError::Unknown`] for a row holding a state this drover
    /// does not know: it is told apart from other database errors.
    #[error("state store: {0}")]
    Sql(rusqlite::Error),
    /// The URL is printed without its password.
    #[error(
        "state store {url}: cannot connect: {reason}. Check that the server runs and is reachable, and the URL in `[state] url` (drover.toml) or DROVER_STATE_URL"
    )]
    Connect { url: String, reason: String },
    #[error("state store {url}: {source}")]
    Pg { url: String, source: postgres::Error },
    #[error("state store URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "state store {path} has schema version {found}, newer than this drover understands ({known}); upgrade drover"
    )]
    TooNew { path: String, found: u32, known: u32 },
    #[error("{}", types::describe_holders(.0))]
    Locked(Vec<LockHolder>),
    #[error("state store {url}: the connection's worker is gone (the database connection failed earlier)")]
    Gone { url: String },
    #[error("state migrate: {0}")]
    Copy(String),
    /// A row holds a state (status, outcome) this drover does not know.
    #[error("state store: {0}")]
    Unknown(UnknownState),
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> StateError {
        match states::unknown_in(&e) {
            Some(u) => StateError::Unknown(u),
            None => StateError::Sql(e),
        }
    }
}

/// The project's state store, on either backend.
pub struct Store {
    b: Box<dyn Backend>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This machine's name, recorded with host locks so a refusal says where
/// the holder runs.
pub fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// Who owns a run started by this process: `machine:pid`, meaningful on
/// every machine sharing the store.
pub fn owner() -> String {
    format!("{}:{}", machine(), std::process::id())
}

pub(crate) fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

/// How long a PostgreSQL host lock lives without renewal. The holder renews
/// it every third of this; a holder that died loses it this long after its
/// last renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Store {
    /// Open (creating it and its directory if needed) and migrate a SQLite
    /// store.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        Ok(Store { b: Box::new(sqlite::Sqlite::open(path)?) })
    }

    /// Connect to a PostgreSQL store and migrate it. Fails (naming the URL
    /// without its password) when the server cannot be reached.
    pub fn connect(url: &str) -> Result<Store, StateError> {
        Ok(Store { b: Box::new(pg::Pg::connect(url)?) })
    }

    pub fn open_location(loc: &Location) -> Result<Store, StateError> {
        match loc {
            Location::Sqlite(p) => Store::open(p),
            Location::Postgres(u) => Store::connect(u),
        }
    }

    /// The store as the operator named it (a path, or the URL without its
    /// password).
    pub fn describe(&self) -> String {
        self.b.describe()
    }

    /// Lease of the host locks this store takes from now on (PostgreSQL;
    /// SQLite locks follow their holder's pid instead), and of the runs it
    /// begins (both backends: see [`Store::heartbeat`]).
    pub fn set_lock_lease(&mut self, lease: Duration) {
        self.b.set_lock_lease(lease);
    }

    pub fn schema_version(&self) -> Result<u32, StateError> {
        self.b.schema_version()
    }

    /// Record the start of a run (and its audit entry) and return its id.
    pub fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError> {
        self.b.begin_run(r)
    }

    /// The pid of the controller that ran `run_id`.
    pub fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError> {
        self.b.run_pid(run_id)
    }

    pub fn finish_run(&mut self, id: i64, status: RunStatus) -> Result<(), StateError> {
        self.b.finish_run(id, status)
    }

    /// The run's owner is alive: push its lease forward by the store's
    /// lease (`[state] lock_lease`). `false` once the run is no longer
    /// `running` (finished, or marked abandoned after a stall).
    pub fn heartbeat(&mut self, run_id: i64) -> Result<bool, StateError> {
        self.b.heartbeat(run_id)
    }

    /// Mark every run whose owner stopped renewing its lease
    /// [`RunStatus::Abandoned`]; their ids. `begin_run` does this first, so
    /// any run started marks the ones before it.
    pub fn mark_abandoned(&mut self) -> Result<Vec<i64>, StateError> {
        self.b.mark_abandoned()
    }

    /// One run, if recorded.
    pub fn run(&self, run_id: i64) -> Result<Option<RunRow>, StateError> {
        self.b.run(run_id)
    }

    /// Record a command that is not a run (drain, exec…) in the audit log.
    pub fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError> {
        self.b.audit(e)
    }

    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        self.b.audit_log(limit)
    }

    pub fn record_host(&mut self, h: &HostResult) -> Result<(), StateError> {
        self.record_hosts(std::slice::from_ref(h))
    }

    /// Many hosts' results in one transaction (a run's summary: one commit,
    /// not one per host, however large the fleet).
    pub fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError> {
        self.b.record_hosts(hs)
    }

    pub fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        self.b.runs(limit)
    }

    /// Per-host results, newest first (ties: later run, then host name
    /// descending, the same on both backends); all hosts when `host` is
    /// `None`.
    pub fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError> {
        self.b.history(host, limit)
    }

    /// Each host's newest result, in one query (`drover serve` colours
    /// 10,000 hosts by it every pass); on a tie in time, the later run's
    /// row comes last.
    pub fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError> {
        self.b.latest_per_host()
    }

    /// One run's results, by host name.
    pub fn run_results(&self, run_id: i64) -> Result<Vec<HostResult>, StateError> {
        self.b.run_results(run_id)
    }

    /// The results of runs `from_run` and later, added up per run and
    /// outcome (ordered by run, then outcome).
    pub fn run_totals(&self, from_run: i64) -> Result<Vec<RunTotal>, StateError> {
        self.b.run_totals(from_run)
    }

    /// Results recorded after `at_ms`, newest first.
    pub fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError> {
        self.b.results_since(at_ms)
    }

    pub fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError> {
        self.b.save_facts(host, facts_json)
    }

    pub fn facts(&self, host: &str) -> Result<Option<String>, StateError> {
        self.b.facts(host)
    }

    /// Every host's cached facts (JSON), for templates that read other
    /// hosts' facts: one query for the whole fleet, not one per host.
    pub fn all_facts(&self) -> Result<Vec<(String, String)>, StateError> {
        self.b.all_facts()
    }

    /// Mark (reason `Some`) or unmark (`None`) a host as drained.
    pub fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError> {
        self.b.set_drained(host, reason)
    }

    /// Drained hosts with since (ms) and reason.
    pub fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError> {
        self.b.drained()
    }

    /// The alerts `drover serve` has open (see [`OpenAlert`]).
    pub fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError> {
        self.b.open_alerts()
    }

    /// Replace the set of open alerts, in one transaction.
    pub fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError> {
        self.b.set_open_alerts(alerts)
    }

    /// Take all of `hosts` for `run_id`, or none: refused
    /// ([`StateError::Locked`], naming the holder) if any is held.
    pub fn lock_hosts(&mut self, run_id: i64, hosts: &[String]) -> Result<HostLock, StateError> {
        self.b.lock_hosts(run_id, hosts)
    }

    pub fn unlock_hosts(&mut self, lock: HostLock) -> Result<(), StateError> {
        self.b.unlock_hosts(lock)
    }

    pub fn create_rollout(&mut self, run_id: Option<i64>, plan: &str, revision: &str) -> Result<i64, StateError> {
        self.b.create_rollout(run_id, plan, revision)
    }

    pub fn update_rollout(&mut self, id: i64, next_batch: i64, status: RolloutStatus) -> Result<(), StateError> {
        self.b.update_rollout(id, next_batch, status)
    }

    /// A controller continuing the rollout in run `run_id`: it is now the
    /// one that `pause`/`resume` talk to, and the rollout is running.
    pub fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError> {
        self.b.take_over_rollout(id, run_id)
    }

    /// Record that batches before `next_batch` are done, leaving the status
    /// alone (a `pause` from another process must not be overwritten).
    pub fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError> {
        self.b.advance_rollout(id, next_batch)
    }

    pub fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError> {
        self.b.rollout(id)
    }

    /// The newest rollouts first.
    pub fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        self.b.rollouts(limit)
    }

    /// The newest rollout that has not finished (running or paused, or
    /// running when its controller died).
    pub fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError> {
        self.b.unfinished_rollout()
    }

    /// Everything recorded (locks excepted: they belong to live processes).
    pub fn export(&self) -> Result<Snapshot, StateError> {
        self.b.export()
    }

    /// Queue one job per host of `run_id` (`apply --workers`; a rollout
    /// queues one batch at a time, each once the one before passed its
    /// gates). `spec` is what workers need to run them (JSON, the
    /// controller's); the first call records it for the whole run.
    pub fn create_jobs(&mut self, run_id: i64, spec: &str, hosts: &[String]) -> Result<(), StateError> {
        self.b.create_jobs(run_id, spec, hosts)
    }

    /// Claim up to `limit` jobs of the oldest open run (its controller
    /// still holds its host locks) with claimable ones
    /// (queued, or held past an expired lease) for `worker`. Two workers
    /// never get the same job: PostgreSQL skips rows another claimer has
    /// locked (`FOR UPDATE SKIP LOCKED`); SQLite claims in one immediate
    /// transaction.
    pub fn claim_jobs(&mut self, worker: &str, limit: i64, lease: Duration) -> Result<Option<Claim>, StateError> {
        self.b.claim_jobs(worker, limit, lease)
    }

    /// Extend the lease of every job `worker` holds (its renewal thread
    /// calls this every third of the lease).
    pub fn renew_jobs(&mut self, worker: &str, lease: Duration) -> Result<u64, StateError> {
        self.b.renew_jobs(worker, lease)
    }

    /// Record results of jobs `worker` still holds and mark them done, in
    /// one transaction; results of jobs it lost are dropped. How many counted.
    pub fn finish_jobs(&mut self, worker: &str, results: &[HostResult]) -> Result<u64, StateError> {
        self.b.finish_jobs(worker, results)
    }

    pub fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>, StateError> {
        self.b.jobs(run_id)
    }

    /// Jobs of open runs not done yet (a worker waits while there are some:
    /// a held job becomes claimable again if its holder dies).
    pub fn unfinished_jobs(&self) -> Result<i64, StateError> {
        self.b.unfinished_jobs()
    }
}
