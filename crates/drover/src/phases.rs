//! Where a host's time went, phase by phase (`--json`'s `phases`).
//!
//! Measured where each phase happens: the controller times what it waits
//! for (connecting, the hello, comparing, sending, confirming); restarting
//! services and probing their health happen inside the agent's `Apply`, so
//! the agent reports those two (`ServiceTimes`) and `activate` is the rest
//! of that round trip. Phases never overlap, so per host they add up to at
//! most its wall time; what is left is compiling, closing connections and
//! retry backoff. Without this, "a deploy takes 1.7 s" cannot say whether
//! SSH, fsync or the supervisor is to blame.

use std::time::Duration;

use drover_proto::ServiceTimes;
use serde::{Deserialize, Serialize};

/// Milliseconds per phase, summed over a host's attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// TCP connect, SSH handshake (host key check) and authentication.
    pub connect_ms: f64,
    /// Starting the agent (its sha256 check; pushing it when missing) and
    /// the hello exchange (facts, host state, recovery).
    pub hello_ms: f64,
    /// Comparing: the no-op hash check, or the manifest diff with the
    /// missing-blob list (compiling the host's state included).
    pub diff_ms: f64,
    /// Streaming missing blobs (compressed chunks) until they are flushed.
    pub send_ms: f64,
    /// The `Apply` (or `Rollback`) round trip minus the agent's service
    /// restarts and health checks: blob checks, the journaled transition
    /// with its fsyncs, the commit, and arming the confirmation watchdog.
    pub activate_ms: f64,
    /// Starting, restarting and reloading services (agent-reported).
    pub restart_ms: f64,
    /// Health probes (agent-reported).
    pub health_ms: f64,
    /// The confirmation: a new connection, its hello and `Confirm`.
    pub confirm_ms: f64,
}

/// Whole microseconds, as milliseconds: precise enough, and rounding down
/// keeps a host's phases within its wall time.
pub fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

impl Phases {
    pub fn total_ms(&self) -> f64 {
        self.fields().iter().sum()
    }

    fn fields(&self) -> [f64; 8] {
        [
            self.connect_ms,
            self.hello_ms,
            self.diff_ms,
            self.send_ms,
            self.activate_ms,
            self.restart_ms,
            self.health_ms,
            self.confirm_ms,
        ]
    }

    pub fn add(&mut self, o: &Phases) {
        self.connect_ms += o.connect_ms;
        self.hello_ms += o.hello_ms;
        self.diff_ms += o.diff_ms;
        self.send_ms += o.send_ms;
        self.activate_ms += o.activate_ms;
        self.restart_ms += o.restart_ms;
        self.health_ms += o.health_ms;
        self.confirm_ms += o.confirm_ms;
    }

    /// Summed over hosts: where the fleet's time went.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Phases>) -> Phases {
        let mut out = Phases::default();
        for p in all {
            out.add(p);
        }
        out
    }

    /// Split an `Apply`/`Rollback` round trip of `call` into activate,
    /// restart and health with what the agent reported. The agent's clock
    /// runs inside the round trip, so its parts never exceed it (a clamp
    /// keeps that true even for a confused agent).
    pub fn add_activation(&mut self, call: Duration, agent: &ServiceTimes) {
        let restart = Duration::from_micros(agent.restart_us).min(call);
        let health = Duration::from_micros(agent.health_us).min(call - restart);
        self.restart_ms += ms(restart);
        self.health_ms += ms(health);
        self.activate_ms += ms(call - restart - health);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_splits_into_parts_that_add_up_to_the_round_trip() {
        let mut p = Phases::default();
        p.add_activation(Duration::from_millis(100), &ServiceTimes { restart_us: 30_000, health_us: 20_000 });
        assert_eq!((p.activate_ms, p.restart_ms, p.health_ms), (50.0, 30.0, 20.0));
        // An agent claiming more than the round trip cannot push the sum past it.
        let mut q = Phases::default();
        q.add_activation(Duration::from_millis(10), &ServiceTimes { restart_us: 8_000, health_us: 9_000 });
        assert_eq!((q.activate_ms, q.restart_ms, q.health_ms), (0.0, 8.0, 2.0));
        assert_eq!(Phases::sum([&p, &q]).total_ms(), 110.0);
    }
}
