//! Recording a run in the project's state store (see [`crate::store`]): who
//! ran what, when, against which project revision; per-host results; host
//! locks so two controllers never work the same hosts at once.

use std::path::Path;

use drover_state::{HostLock, HostResult, NewRun, StateError, Store};

use super::heartbeat::Heartbeat;
use super::refusal::Refusal;
use crate::host::HostReport;
use crate::store::{open, project_rev, user};

pub struct Run {
    pub store: Store,
    pub id: i64,
    lock: Option<HostLock>,
    /// Renews the run's lease while it lives (dropped last: see `finish`).
    heartbeat: Option<Heartbeat>,
}

/// The state store went away mid-run. Exit 2: hosts may have changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{who} lost the state store mid-run ({reason}). No more hosts were taken on; {in_flight}. Once the database is back, run the same command again: hosts that converged are found unchanged, the others are applied"
)]
pub struct StoreLost {
    /// "run 12", "worker host:pid".
    pub who: String,
    pub reason: String,
    /// What became of the hosts already started.
    pub in_flight: String,
}

impl Run {
    /// Whether the run's host locks still hold (see [`drover_state::LeaseWatch`]).
    pub fn watch(&self) -> drover_state::LeaseWatch {
        self.lock.as_ref().map(HostLock::watch).unwrap_or_default()
    }

    /// Record the run and lock its hosts; refused (exit 3) if another drover
    /// holds any of them.
    pub fn start(project_dir: &Path, command: &str, hosts: &[String]) -> anyhow::Result<Run> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Run::start_as(project_dir, command, &args.join(" "), &user(), hosts)
    }

    /// [`Run::start`] on someone else's behalf: `drover serve` records the
    /// token's name as the user and what was asked as the arguments.
    pub fn start_as(
        project_dir: &Path,
        command: &str,
        args: &str,
        user: &str,
        hosts: &[String],
    ) -> anyhow::Result<Run> {
        let mut store = open(project_dir)?;
        let id = store.begin_run(&NewRun {
            command: command.into(),
            args: args.into(),
            user: user.into(),
            project_rev: project_rev(project_dir),
        })?;
        let lease = drover_spec::state::settings(project_dir)?.lock_lease.unwrap_or(drover_state::DEFAULT_LEASE);
        let heartbeat = Some(Heartbeat::start(open(project_dir)?, id, lease));
        match store.lock_hosts(id, hosts) {
            Ok(lock) => Ok(Run { store, id, lock: Some(lock), heartbeat }),
            Err(StateError::Locked(h)) => {
                let msg = StateError::Locked(h).to_string();
                store.finish_run(id, drover_state::RunStatus::Refused)?;
                Err(Refusal::HostsLocked(msg).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Where this run's sessions report each host's activation as it
    /// happens (recorded at once, so a killed controller's run still shows
    /// the hosts it touched).
    pub fn activations(&self) -> crate::host::Activations {
        self.heartbeat.as_ref().map(|h| h.activations(self.id)).unwrap_or_default()
    }

    pub fn record(&mut self, r: &HostReport) -> anyhow::Result<()> {
        self.record_all(std::slice::from_ref(r))
    }

    /// Every host's result in one transaction.
    pub fn record_all(&mut self, reports: &[HostReport]) -> anyhow::Result<()> {
        // The hosts' activations first: their final results replace them.
        if let Some(h) = &self.heartbeat {
            h.flush();
        }
        let rows = reports.iter().map(|r| host_result(self.id, r)).collect::<anyhow::Result<Vec<_>>>()?;
        self.store.record_hosts(&rows)?;
        Ok(())
    }

    pub fn finish(mut self, ok: bool) -> anyhow::Result<()> {
        // Activations still on their way are recorded before the end is.
        drop(self.heartbeat.take());
        if let Some(l) = self.lock.take() {
            self.store.unlock_hosts(l)?;
        }
        self.store
            .finish_run(self.id, if ok { drover_state::RunStatus::Ok } else { drover_state::RunStatus::Failed })?;
        Ok(())
    }
}

/// A host's report as the store records it in run `run_id`.
pub fn host_result(run_id: i64, r: &HostReport) -> anyhow::Result<HostResult> {
    Ok(HostResult {
        run_id,
        host: r.host.clone(),
        outcome: r.outcome,
        generation: r.generation.and_then(|g| i64::try_from(g).ok()),
        changes: r.changes.len() as i64,
        bytes_sent: i64::try_from(r.bytes_sent).unwrap_or(i64::MAX),
        files_written: i64::try_from(r.files_written).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
        error: r.error.clone(),
        detail: serde_json::to_string(r)?,
        at_ms: drover_state::now_ms(),
    })
}
