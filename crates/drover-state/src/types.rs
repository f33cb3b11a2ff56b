//! What callers read and write: plain structs, the same on both backends.

use crate::{JobState, Outcome, RolloutStatus, RunStatus};

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub command: String,
    pub args: String,
    pub user: String,
    pub project_rev: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub command: String,
    pub args: String,
    pub user: String,
    pub project_rev: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub status: RunStatus,
    /// Who runs it (`machine:pid`); `None` for runs recorded before owners were.
    pub owner: Option<String>,
    /// Until when its owner is known alive: the owner's heartbeat pushes
    /// it forward while the run lasts. Past it, with the run still
    /// `running`, the next run marks it [`RunStatus::Abandoned`].
    pub lease_expires_ms: Option<i64>,
}

impl RunRow {
    /// Still `running`, but its owner stopped renewing its lease (by
    /// `now_ms`): killed, hung, or its machine gone. Works across machines
    /// (a pid would mean nothing on another one).
    pub fn is_orphaned(&self, now_ms: i64) -> bool {
        self.status == RunStatus::Running && self.lease_expires_ms.is_some_and(|t| t < now_ms)
    }
}

/// One host's outcome in one run. `detail` is the full report as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResult {
    pub run_id: i64,
    pub host: String,
    pub outcome: Outcome,
    pub generation: Option<i64>,
    pub changes: i64,
    pub bytes_sent: i64,
    pub files_written: i64,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub detail: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub user: String,
    pub command: String,
    pub args: String,
    pub project_rev: String,
    pub run_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub id: i64,
    /// The run of the controller driving it (the last to start or resume it).
    pub run_id: Option<i64>,
    /// The rollout plan (batches, policy) as JSON, owned by the controller.
    pub plan: String,
    /// Index of the first batch not yet done.
    pub next_batch: i64,
    pub status: RolloutStatus,
    pub updated_ms: i64,
    /// The project revision it started from (see `drover::revision`);
    /// `None` for rollouts recorded before revisions were.
    pub revision: Option<String>,
}

/// Who holds a host's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub host: String,
    pub run_id: i64,
    pub pid: u32,
    /// The holder's machine (empty for SQLite locks taken by an older drover).
    pub machine: String,
    pub command: String,
    pub since_ms: i64,
}

/// Held until given to [`crate::Store::unlock_hosts`]. On PostgreSQL it
/// also renews its lease from a background thread while it lives, and
/// dropping it without unlocking releases the hosts too.
#[derive(Debug)]
pub struct HostLock {
    pub run_id: i64,
    pub hosts: Vec<String>,
    pub(crate) lease: Option<crate::pg::Lease>,
}

impl HostLock {
    /// Tells, from any thread, whether this lock can still be counted on.
    pub fn watch(&self) -> LeaseWatch {
        LeaseWatch(self.lease.as_ref().map(|l| l.lost.clone()))
    }
}

/// Whether a [`HostLock`]'s lease still holds. A PostgreSQL lease whose
/// renewal failed (the database went away, or this process stalled past
/// the lease and another run took hosts over) is lost for good: from then
/// on another controller may lock those hosts, so the holder must start no
/// more of them. SQLite locks follow their holder's pid and are never lost.
#[derive(Debug, Clone, Default)]
pub struct LeaseWatch(Option<std::sync::Arc<std::sync::OnceLock<String>>>);

impl LeaseWatch {
    /// Why the lease was lost, once it was.
    pub fn lost(&self) -> Option<&str> {
        self.0.as_ref().and_then(|l| l.get()).map(String::as_str)
    }
}

/// Everything a store recorded, as `drover state migrate` copies it. Rows
/// keep their ids, so runs, results, audit entries and rollouts still point
/// at each other in the copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Each run with the pid of its controller.
    pub runs: Vec<(RunRow, u32)>,
    pub results: Vec<HostResult>,
    /// Each entry with its id.
    pub audit: Vec<(i64, AuditEntry)>,
    /// host, facts (JSON), updated_ms
    pub facts: Vec<(String, String, i64)>,
    /// host, since_ms, reason
    pub drained: Vec<(String, i64, Option<String>)>,
    pub rollouts: Vec<Rollout>,
}

pub(crate) fn describe_holders(holders: &[LockHolder]) -> String {
    let first = &holders[0];
    let hosts: Vec<&str> = holders.iter().map(|h| h.host.as_str()).collect();
    let at = if first.machine.is_empty() { String::new() } else { format!(" on {}", first.machine) };
    format!(
        "{} host(s) are being changed by another drover (run {}, `drover {}`, pid {}{at}): {}. Wait for it to finish; if that process is gone, its lock is released automatically",
        holders.len(),
        first.run_id,
        first.command,
        first.pid,
        hosts.join(", ")
    )
}

/// An alert `drover serve` has open, kept across its restarts: a firing
/// alert is not sent again by the next server, and its resolve message still
/// goes out when the condition clears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub rule: String,
    pub subject: String,
    /// Since when the condition holds.
    pub since_ms: i64,
    /// Whether the firing message went out.
    pub fired: bool,
}

/// One host's job in a run split across workers (`drover apply --workers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub run_id: i64,
    pub host: String,
    pub state: JobState,
    /// The worker (`machine:pid`) holding or last holding it.
    pub claimed_by: Option<String>,
    /// How many times it was claimed (more than once: a worker died or
    /// stalled past its lease).
    pub claims: i64,
    /// The previous holder, when it was claimed again after a lease expired.
    pub claimed_before: Option<String>,
    pub lease_expires_ms: Option<i64>,
    /// The host's outcome once done.
    pub outcome: Option<Outcome>,
    /// The host's full report (JSON) once done, from `host_results`.
    pub detail: Option<String>,
}

/// One run's results with one outcome, added up (`drover serve`'s runs page
/// groups a run's hosts without reading each host's report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTotal {
    pub run_id: i64,
    pub outcome: Outcome,
    pub hosts: i64,
    pub changes: i64,
    pub bytes_sent: i64,
    /// The longest host's duration.
    pub max_duration_ms: i64,
}

/// Jobs a worker just claimed: all of one run, with that run's work spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub run_id: i64,
    /// What the run asked for (deploy options as JSON, owned by the controller).
    pub spec: String,
    pub hosts: Vec<String>,
}
