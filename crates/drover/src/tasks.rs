//! Host tasks that die. Each host runs in a task of its own; one that panics
//! (a bug in drover, not a problem of the host) must still be accounted for:
//! reported `failed` with the panic message, and counted in the exit code.
//! Dropping it would make a run that did not reach a host look successful.

use tokio::task::JoinError;

/// What to report for a host whose task ended without a result.
pub fn failure(e: JoinError) -> String {
    if !e.is_panic() {
        return "internal error: drover's task for this host was cancelled".into();
    }
    let payload = e.into_panic();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    format!("internal error: drover's task for this host panicked: {msg} (a bug in drover; please report it)")
}
