//! The check loop, kept apart from the server: passes run on a runtime of
//! their own, watched from the server's.
//!
//! A pass renders the project, which runs the project's templates: a
//! template looping 10,000³ times holds a thread until `[limits]
//! template-steps` stops it (seconds to minutes). On the server's runtime
//! that froze the loop, the pages and SIGTERM. Here the server's runtime
//! only waits for the pass: when rendering runs past [`RENDER_BOUND`] the
//! page shows a project error (the last snapshot kept) and again every
//! interval while it goes on, so the pass counter keeps moving; no second
//! pass starts until the first ends; and stopping the server abandons the
//! pass runtime rather than waiting for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::check;
use super::shared::{Shared, Stage};

/// How long rendering the project may take before the page says so (the
/// default step bound takes about 2 s in a release build).
pub(crate) const RENDER_BOUND: Duration = Duration::from_secs(5);

/// Probing every host may take this long before the page says so (each
/// connection is bounded by `connect-timeout`, each reply by the agent).
const PROBE_BOUND: Duration = Duration::from_secs(120);

/// The runtime passes run on (two threads: one rendering, one for the rest).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("drover-pass").enable_all().build()
}

/// Pass after pass, `every` apart (or at once when woken), each on
/// `passes`, for as long as the server runs.
pub(crate) async fn run(sh: Arc<Shared>, passes: tokio::runtime::Handle, every: Duration, reconcile: bool) {
    super::restore_alerts(&sh).await;
    loop {
        let s = sh.clone();
        let mut job = passes.spawn(async move {
            check::pass(&s, reconcile).await;
            super::save_alerts(&s).await;
        });
        let begun = Instant::now();
        let mut wait = RENDER_BOUND;
        while tokio::time::timeout(wait, &mut job).await.is_err() {
            overdue(&sh, begun.elapsed());
            wait = every.max(Duration::from_secs(1));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = sh.wake.notified() => {}
        }
    }
}

/// A pass still running after `took`: say what it is stuck on.
fn overdue(sh: &Shared, took: Duration) {
    let secs = took.as_secs();
    match sh.stage() {
        Stage::Rendering => sh.project_broken(format!(
            "rendering the project has taken {secs} s and goes on: a template may be looping \
             (`[limits] template-steps` in drover.toml bounds it; the hosts shown are from the last pass)"
        )),
        Stage::Probing if took >= PROBE_BOUND => {
            sh.keep_last(format!("checking the hosts has taken {secs} s and goes on"))
        }
        Stage::Probing | Stage::Healing | Stage::Idle => {}
    }
}
