//! `drover serve`: the fleet at a glance (dashboard, JSON API, live updates
//! by server-sent events), Prometheus metrics, and continuous convergence.
//!
//! One background loop owns all contact with hosts ([`check::pass`]); each
//! pass builds a [`Snapshot`] that pages, the API and `/metrics` read
//! without touching hosts or the state store, so a slow host, a hung SSH
//! connection or a CLI `apply` holding the store never stalls a request.

mod actions;
mod alerts;
mod api;
pub mod auth;
mod check;
mod metrics;
mod runs;
pub mod snapshot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};

pub use auth::{Role, Tokens};
pub use snapshot::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without --token-file: anyone who can reach it could deploy; \
         bind 127.0.0.1, or give a token file (lines `name role token`, see docs/operations.md)"
    )]
    NeedsTokens(SocketAddr),
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tokens(#[from] auth::TokenError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct Config {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Recorded passes (and healing, by policy) this often; `None`: the
    /// dashboard still refreshes every `check_every`, unrecorded.
    pub reconcile: Option<Duration>,
    pub check_every: Duration,
    pub tokens: Option<Tokens>,
    pub simulate: Option<PathBuf>,
}

/// What every request handler and the check loop share.
pub struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) simulate: Option<PathBuf>,
    snap: RwLock<Arc<Snapshot>>,
    /// One JSON message per pass, for the SSE stream.
    events: broadcast::Sender<Arc<str>>,
    /// Wakes the loop for an immediate pass (after an action).
    wake: Notify,
    pub(crate) tokens: Option<Tokens>,
    pub(crate) counters: Mutex<metrics::Counters>,
    /// `[[alert]]` rules and the alerts they have open.
    pub(crate) alerts: Mutex<alerts::Alerts>,
    /// Secret mixed into CSRF tokens: new per server start.
    pub(crate) csrf_key: [u8; 32],
}

impl Shared {
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

/// Serve until interrupted (Ctrl-C / SIGTERM).
pub fn run(cfg: Config) -> Result<(), ServeError> {
    if !cfg.listen.ip().is_loopback() && cfg.tokens.is_none() {
        return Err(ServeError::NeedsTokens(cfg.listen));
    }
    let mut csrf_key = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut csrf_key)?;
    let shared = Arc::new(Shared {
        dir: cfg.dir.clone(),
        simulate: cfg.simulate.clone(),
        snap: RwLock::new(Arc::new(Snapshot::default())),
        events: broadcast::channel(64).0,
        wake: Notify::new(),
        tokens: cfg.tokens,
        counters: Mutex::new(metrics::Counters::default()),
        alerts: Mutex::new(alerts::Alerts::default()),
        csrf_key,
    });
    let rt = crate::run::fleet::runtime().map_err(|e| std::io::Error::other(e.to_string()))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: cfg.listen, source })?;
        let addr = listener.local_addr()?;
        // Tests and scripts read the real address (port 0 picks one).
        println!("drover serve: listening on http://{addr}");
        let sh = shared.clone();
        let (every, reconcile) = (cfg.reconcile.unwrap_or(cfg.check_every), cfg.reconcile.is_some());
        tokio::spawn(async move {
            restore_alerts(&sh).await;
            loop {
                check::pass(&sh, reconcile).await;
                save_alerts(&sh).await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = sh.wake.notified() => {}
                }
            }
        });
        tokio::spawn(watch_rollout(shared.clone()));
        axum::serve(listener, api::router(shared)).with_graceful_shutdown(shutdown()).await?;
        Ok(())
    })
}

/// Open alerts as the last server left them: one already sent is not sent
/// again, and its resolve message still goes out.
async fn restore_alerts(sh: &Arc<Shared>) {
    let dir = sh.dir.clone();
    match tokio::task::spawn_blocking(move || crate::store::open(&dir)?.open_alerts().map_err(anyhow::Error::from))
        .await
    {
        Ok(Ok(saved)) => sh.alerts.lock().unwrap_or_else(|e| e.into_inner()).restore(saved),
        Ok(Err(e)) => tracing::warn!("open alerts not restored (they may fire again): {e:#}"),
        Err(e) => tracing::warn!("open alerts not restored (they may fire again): {e}"),
    }
}

/// After a pass: the open alerts, if they changed (kept for the next try
/// when the store is busy).
async fn save_alerts(sh: &Arc<Shared>) {
    let Some(list) = sh.alerts.lock().unwrap_or_else(|e| e.into_inner()).take_changes() else { return };
    let dir = sh.dir.clone();
    let saved = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        Ok(crate::store::open(&dir)?.set_open_alerts(&list)?)
    })
    .await;
    let err = match saved {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => e.to_string(),
    };
    tracing::warn!("saving open alerts: {err} (trying again after the next pass)");
    sh.alerts.lock().unwrap_or_else(|e| e.into_inner()).unsaved();
}

/// Every second, the latest rollout's row (one short read); when it moved,
/// publish it and check the hosts again (their generations changed).
async fn watch_rollout(sh: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let dir = sh.dir.clone();
        let latest = tokio::task::spawn_blocking(move || -> Option<snapshot::RolloutView> {
            let store = crate::store::open(&dir).ok()?;
            store.rollouts(1).ok()?.first().map(snapshot::RolloutView::of)
        })
        .await
        .ok()
        .flatten();
        if latest.is_some() && latest != sh.snapshot().rollout {
            sh.publish_rollout(latest);
            sh.wake.notify_one();
        }
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
