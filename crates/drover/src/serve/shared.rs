//! What every request handler and the check loop share: the latest
//! snapshot and its SSE stream, counters, alerts, tokens.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, Notify};

use super::auth::Tokens;
use super::snapshot::{self, Snapshot};
use super::{alerts, metrics};

/// What every request handler and the check loop share.
pub struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) simulate: Option<PathBuf>,
    snap: RwLock<Arc<Snapshot>>,
    /// One JSON message per pass, for the SSE stream.
    pub(super) events: broadcast::Sender<Arc<str>>,
    /// Wakes the loop for an immediate pass (after an action).
    pub(super) wake: Notify,
    pub(crate) tokens: Option<Tokens>,
    pub(crate) counters: Mutex<metrics::Counters>,
    /// `[[alert]]` rules and the alerts they have open.
    pub(crate) alerts: Mutex<alerts::Alerts>,
    /// Secret mixed into CSRF tokens: new per server start.
    pub(crate) csrf_key: [u8; 32],
    /// What the running check pass is doing, and since when (the pass
    /// watchdog names it when a pass runs long).
    stage: Mutex<(Stage, std::time::Instant)>,
}

/// A check pass's steps, as the watchdog reports a long one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Idle,
    /// Loading the project and rendering it (a runaway template shows here).
    Rendering,
    /// Asking every host (and compiling the project for each).
    Probing,
    /// Re-applying hosts under `reconcile = "heal"`.
    Healing,
}

impl Shared {
    pub(super) fn new(dir: PathBuf, simulate: Option<PathBuf>, tokens: Option<Tokens>, csrf_key: [u8; 32]) -> Shared {
        Shared {
            dir,
            simulate,
            snap: RwLock::new(Arc::new(Snapshot::default())),
            events: broadcast::channel(64).0,
            wake: Notify::new(),
            tokens,
            counters: Mutex::new(metrics::Counters::default()),
            alerts: Mutex::new(alerts::Alerts::default()),
            csrf_key,
            stage: Mutex::new((Stage::Idle, std::time::Instant::now())),
        }
    }

    pub(crate) fn set_stage(&self, stage: Stage) {
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = (stage, std::time::Instant::now());
    }

    pub(crate) fn stage(&self) -> Stage {
        self.stage.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the snapshot and tell every open page what changed.
    pub(crate) fn publish(&self, mut new: Snapshot) {
        let old = self.snapshot();
        new.pass = old.pass + 1;
        let before: std::collections::HashMap<&str, &snapshot::HostView> =
            old.hosts.iter().map(|h| (h.host.as_str(), h)).collect();
        let changed: Vec<_> =
            new.hosts.iter().filter(|h| before.get(h.host.as_str()).is_none_or(|o| h.differs(o))).collect();
        let problems = self.problems(&new);
        // Written straight to text: a JSON tree of every changed host (all
        // 10,000 on a first pass) costs several times its text.
        let msg = serde_json::to_string(&Update {
            pass: new.pass,
            at_ms: new.at_ms,
            counts: new.counts(),
            rollout: &new.rollout,
            project_error: &new.project_error,
            problems,
            changed,
            total: new.hosts.len(),
        })
        .unwrap_or_default();
        drop(before);
        drop(old);
        let new = Arc::new(new);
        *self.snap.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        let _ = self.events.send(msg.into());
        self.alerts.lock().unwrap_or_else(|e| e.into_inner()).evaluate(&new);
    }

    /// What the page's banner lists: the pass's problems, then alert
    /// messages no webhook took.
    pub(crate) fn problems(&self, snap: &Snapshot) -> Vec<String> {
        let undelivered = self.alerts.lock().unwrap_or_else(|e| e.into_inner()).undelivered();
        snap.problems.iter().cloned().chain(undelivered.iter().map(|u| u.line())).collect()
    }

    /// A pass that could not run at all: keep the last snapshot, say why.
    pub(crate) fn keep_last(&self, problem: String) {
        self.keep_last_as(problem, None);
    }

    /// [`Shared::keep_last`] because the project does not load: the
    /// rollout box shows `error` too.
    pub(crate) fn project_broken(&self, error: String) {
        self.keep_last_as(format!("project: {error}"), Some(error));
    }

    fn keep_last_as(&self, problem: String, project_error: Option<String>) {
        tracing::warn!("check pass: {problem}");
        let old = self.snapshot();
        self.publish(Snapshot {
            at_ms: old.at_ms,
            pass: 0,
            hosts: old.hosts.clone(),
            rollout: old.rollout.clone(),
            problems: vec![problem],
            project_error,
            check_ms: 0,
        });
    }

    /// The same snapshot with the latest rollout's progress, so the page
    /// follows a rollout batch by batch between check passes.
    pub(crate) fn publish_rollout(&self, rollout: Option<snapshot::RolloutView>) {
        let old = self.snapshot();
        self.publish(Snapshot {
            at_ms: old.at_ms,
            pass: 0,
            hosts: old.hosts.clone(),
            rollout,
            problems: old.problems.clone(),
            project_error: old.project_error.clone(),
            check_ms: old.check_ms,
        });
    }
}

/// One SSE `update` message: what a page needs to follow a pass.
#[derive(serde::Serialize)]
struct Update<'a> {
    pass: u64,
    at_ms: i64,
    counts: std::collections::BTreeMap<&'static str, usize>,
    rollout: &'a Option<snapshot::RolloutView>,
    project_error: &'a Option<String>,
    problems: Vec<String>,
    changed: Vec<&'a snapshot::HostView>,
    total: usize,
}
