//! The one trait both backends implement; [`crate::Store`] forwards to it.

use std::time::Duration;

use crate::{
    AuditEntry, Claim, HostLock, HostResult, JobRow, NewRun, OpenAlert, Rollout, RolloutStatus, RunRow, RunStatus,
    Snapshot, StateError,
};

/// A state backend. Every method is one transaction (or one statement):
/// callers never see a half-recorded run. Implementations must be `Send`
/// because a `Store` lives in statics and moves into blocking tasks.
pub trait Backend: Send {
    /// The path, or the URL without its password.
    fn describe(&self) -> String;
    fn set_lock_lease(&mut self, lease: Duration);
    fn schema_version(&self) -> Result<u32, StateError>;
    fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError>;
    fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError>;
    fn finish_run(&mut self, id: i64, status: RunStatus) -> Result<(), StateError>;
    /// Extend run `id`'s lease; whether it is still running.
    fn heartbeat(&mut self, id: i64) -> Result<bool, StateError>;
    /// Mark runs whose lease expired abandoned; their ids.
    fn mark_abandoned(&mut self) -> Result<Vec<i64>, StateError>;
    fn run(&self, id: i64) -> Result<Option<RunRow>, StateError>;
    fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError>;
    fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError>;
    fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError>;
    fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError>;
    fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError>;
    fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError>;
    fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError>;
    fn run_results(&self, run_id: i64) -> Result<Vec<HostResult>, StateError>;
    fn run_totals(&self, from_run: i64) -> Result<Vec<crate::RunTotal>, StateError>;
    fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError>;
    fn facts(&self, host: &str) -> Result<Option<String>, StateError>;
    fn all_facts(&self) -> Result<Vec<(String, String)>, StateError>;
    fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError>;
    fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError>;
    fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError>;
    fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError>;
    /// All of `hosts` or none; refused with [`StateError::Locked`] naming
    /// the holder if any is held.
    fn lock_hosts(&mut self, run_id: i64, hosts: &[String]) -> Result<HostLock, StateError>;
    fn unlock_hosts(&mut self, lock: HostLock) -> Result<(), StateError>;
    fn create_rollout(&mut self, run_id: Option<i64>, plan: &str, revision: &str) -> Result<i64, StateError>;
    fn update_rollout(&mut self, id: i64, next_batch: i64, status: RolloutStatus) -> Result<(), StateError>;
    fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError>;
    fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError>;
    fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError>;
    fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError>;
    fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError>;
    fn export(&self) -> Result<Snapshot, StateError>;
    /// Write `s` into this store, which must have no runs yet; ids are kept
    /// (and id sequences moved past them).
    fn import(&mut self, s: &Snapshot) -> Result<(), StateError>;
    /// Queue one job per host of `run_id`; the first call records its work spec.
    fn create_jobs(&mut self, run_id: i64, spec: &str, hosts: &[String]) -> Result<(), StateError>;
    /// Claim up to `limit` claimable jobs (queued, or claimed with an
    /// expired lease) of the oldest run that has any, for `worker`, leased
    /// for `lease`. `None`: nothing claimable now.
    fn claim_jobs(&mut self, worker: &str, limit: i64, lease: Duration) -> Result<Option<Claim>, StateError>;
    /// Extend the lease of every job `worker` holds; how many it holds.
    fn renew_jobs(&mut self, worker: &str, lease: Duration) -> Result<u64, StateError>;
    /// Mark the jobs of `results` done and record the results, in one
    /// transaction, but only those `worker` still holds (a job re-claimed
    /// after its lease expired belongs to its new holder). How many counted.
    fn finish_jobs(&mut self, worker: &str, results: &[HostResult]) -> Result<u64, StateError>;
    /// A run's jobs, by host.
    fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>, StateError>;
    /// Jobs of any run not done yet.
    fn unfinished_jobs(&self) -> Result<i64, StateError>;
}
