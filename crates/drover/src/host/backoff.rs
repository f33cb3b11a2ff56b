//! How long a host's session waits before trying again.

use std::time::Duration;

/// Exponential backoff with jitter, so a fleet that lost its network does not
/// reconnect in lockstep.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 250u64 << attempt.min(6);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Duration::from_millis(base + u64::from(nanos) % base)
}
