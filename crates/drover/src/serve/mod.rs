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
mod heal;
mod metrics;
mod passes;
mod runs;
mod shared;
pub mod snapshot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{Role, Tokens};
pub use shared::Shared;
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

/// Serve until interrupted (Ctrl-C / SIGTERM).
pub fn run(cfg: Config) -> Result<(), ServeError> {
    if !cfg.listen.ip().is_loopback() && cfg.tokens.is_none() {
        return Err(ServeError::NeedsTokens(cfg.listen));
    }
    let mut csrf_key = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut csrf_key)?;
    let shared = Arc::new(Shared::new(cfg.dir.clone(), cfg.simulate.clone(), cfg.tokens, csrf_key));
    let rt = crate::run::fleet::runtime().map_err(|e| std::io::Error::other(e.to_string()))?;
    let passes = passes::runtime()?;
    let pass_handle = passes.handle().clone();
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: cfg.listen, source })?;
        let addr = listener.local_addr()?;
        // Tests and scripts read the real address (port 0 picks one).
        println!("drover serve: listening on http://{addr}");
        // Alert deliveries live here, not on the pass runtime: a stuck
        // pass must not hold back a message.
        shared.alerts.lock().unwrap_or_else(|e| e.into_inner()).deliver_on(tokio::runtime::Handle::current());
        let (every, reconcile) = (cfg.reconcile.unwrap_or(cfg.check_every), cfg.reconcile.is_some());
        tokio::spawn(passes::run(shared.clone(), pass_handle, every, reconcile));
        tokio::spawn(watch_rollout(shared.clone()));
        axum::serve(listener, api::router(shared)).with_graceful_shutdown(shutdown()).await?;
        Ok(())
    });
    // Interrupted mid-pass (a runaway template rendering, a host slow to
    // answer): do not wait for it; the process ends with it.
    passes.shutdown_background();
    rt.shutdown_timeout(Duration::from_millis(300));
    served
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
