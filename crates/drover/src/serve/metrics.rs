//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Per-host gauges come from the last check pass (no host is contacted to
//! render them); run counters and histograms count every host result
//! recorded in the state store (CLI runs too) since this server started.
//! Written by hand: the format is a few lines of text, and a metrics crate
//! would keep a second copy of 10,000 hosts' series in memory.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::snapshot::{Snapshot, State};

/// Upper bounds (seconds) of the per-host apply duration histogram.
const DURATION_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Debug, Default)]
pub struct Counters {
    /// Only results recorded after this instant are new.
    watermark_ms: Option<i64>,
    outcomes: BTreeMap<String, u64>,
    bytes_sent: u64,
    buckets: [u64; DURATION_BUCKETS.len()],
    duration_sum_s: f64,
    duration_count: u64,
}

impl Counters {
    /// Results after this instant are new (`None` before the first pass).
    pub fn since(&self) -> Option<i64> {
        self.watermark_ms
    }

    /// Count `rows` (recorded after [`Counters::since`]). The first call
    /// only sets the watermark to `newest`: history from before the server
    /// started is not re-counted on every restart.
    pub fn observe(&mut self, rows: &[drover_state::HostResult], newest: i64) {
        let Some(mark) = self.watermark_ms else {
            self.watermark_ms = Some(newest);
            return;
        };
        for r in rows.iter().filter(|r| r.at_ms > mark) {
            *self.outcomes.entry(r.outcome.as_str().to_string()).or_default() += 1;
            self.bytes_sent += u64::try_from(r.bytes_sent).unwrap_or(0);
            let s = r.duration_ms.max(0) as f64 / 1000.0;
            for (i, b) in DURATION_BUCKETS.iter().enumerate() {
                if s <= *b {
                    self.buckets[i] += 1;
                }
            }
            self.duration_sum_s += s;
            self.duration_count += 1;
        }
        self.watermark_ms = Some(rows.iter().map(|r| r.at_ms).fold(mark.max(newest), i64::max));
    }
}

/// A label value, escaped as the format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `drover_host_last_run_success`: 1 unless the run failed, rolled back or
/// could not reach the host (every outcome named, so a new one must be
/// placed here).
fn succeeded(outcome: drover_state::Outcome) -> bool {
    use drover_state::Outcome as O;
    match outcome {
        O::Failed | O::RolledBack | O::Unreachable => false,
        // Activated: not (yet) a failure; see `serve::alerts`.
        O::Unchanged | O::Planned | O::Changed | O::Activated | O::Rebooted | O::Skipped => true,
    }
}

pub fn render(s: &Snapshot, c: &Counters) -> String {
    let mut o = String::with_capacity(256 + s.hosts.len() * 400);
    let head = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        &mut o,
        "drover_host_state",
        "gauge",
        "1 for the state the host is in (the dashboard's colour; behind: not on the project's desired state).",
    );
    for h in &s.hosts {
        let _ = writeln!(o, "drover_host_state{{host=\"{}\",state=\"{}\"}} 1", esc(&h.host), h.state.as_str());
    }
    head(&mut o, "drover_hosts", "gauge", "Hosts per state.");
    for (state, n) in s.counts() {
        let _ = writeln!(o, "drover_hosts{{state=\"{state}\"}} {n}");
    }
    head(&mut o, "drover_host_reachable", "gauge", "1 if the last check pass reached the host.");
    for h in &s.hosts {
        let _ = writeln!(o, "drover_host_reachable{{host=\"{}\"}} {}", esc(&h.host), u8::from(h.probe.is_ok()));
    }
    head(&mut o, "drover_host_generation", "gauge", "The host's current generation (reachable hosts on one).");
    for h in &s.hosts {
        if let Some(g) = h.probe.as_ref().ok().and_then(|p| p.state.current) {
            let _ = writeln!(o, "drover_host_generation{{host=\"{}\"}} {g}", esc(&h.host));
        }
    }
    head(&mut o, "drover_host_drift_files", "gauge", "Managed paths changed on the host since they were applied.");
    for h in &s.hosts {
        if let Ok(p) = &h.probe {
            let _ = writeln!(o, "drover_host_drift_files{{host=\"{}\"}} {}", esc(&h.host), p.drift.len());
        }
    }
    head(&mut o, "drover_host_drained", "gauge", "1 if the host is drained.");
    for h in &s.hosts {
        let _ = writeln!(o, "drover_host_drained{{host=\"{}\"}} {}", esc(&h.host), u8::from(h.state == State::Drained));
    }
    head(
        &mut o,
        "drover_service_healthy",
        "gauge",
        "1 healthy, 0 failing (services with a health check; not of drained hosts, stopped on purpose).",
    );
    for h in s.hosts.iter().filter(|h| h.state != State::Drained) {
        for sv in h.probe.iter().flat_map(|p| &p.services) {
            if let Some(ok) = sv.healthy {
                let _ = writeln!(
                    o,
                    "drover_service_healthy{{host=\"{}\",service=\"{}\"}} {}",
                    esc(&h.host),
                    esc(&sv.name),
                    u8::from(ok)
                );
            }
        }
    }
    head(&mut o, "drover_host_last_run_timestamp_seconds", "gauge", "When the host's last recorded run ended.");
    for h in &s.hosts {
        if let Some(l) = &h.last {
            let _ = writeln!(
                o,
                "drover_host_last_run_timestamp_seconds{{host=\"{}\"}} {:.3}",
                esc(&h.host),
                l.at_ms as f64 / 1000.0
            );
        }
    }
    head(&mut o, "drover_host_last_run_success", "gauge", "1 if the host's last recorded run succeeded.");
    for h in &s.hosts {
        if let Some(l) = &h.last {
            let ok = succeeded(l.outcome);
            let _ = writeln!(
                o,
                "drover_host_last_run_success{{host=\"{}\",outcome=\"{}\"}} {}",
                esc(&h.host),
                esc(l.outcome.as_str()),
                u8::from(ok)
            );
        }
    }
    head(&mut o, "drover_host_results_total", "counter", "Host results recorded since the server started, by outcome.");
    for (k, n) in &c.outcomes {
        let _ = writeln!(o, "drover_host_results_total{{outcome=\"{}\"}} {n}", esc(k));
    }
    head(
        &mut o,
        "drover_bytes_sent_total",
        "counter",
        "Bytes sent to hosts by recorded runs since the server started.",
    );
    let _ = writeln!(o, "drover_bytes_sent_total {}", c.bytes_sent);
    head(&mut o, "drover_host_run_duration_seconds", "histogram", "Per-host run durations since the server started.");
    for (b, n) in DURATION_BUCKETS.iter().zip(c.buckets) {
        let _ = writeln!(o, "drover_host_run_duration_seconds_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(o, "drover_host_run_duration_seconds_bucket{{le=\"+Inf\"}} {}", c.duration_count);
    let _ = writeln!(o, "drover_host_run_duration_seconds_sum {:.3}", c.duration_sum_s);
    let _ = writeln!(o, "drover_host_run_duration_seconds_count {}", c.duration_count);
    head(&mut o, "drover_rollout_batches", "gauge", "The latest rollout: batches in all, and done.");
    if let Some(r) = &s.rollout {
        let _ = writeln!(
            o,
            "drover_rollout_batches{{rollout=\"{}\",status=\"{}\",of=\"total\"}} {}",
            r.id,
            esc(r.status.as_str()),
            r.batches.len()
        );
        let _ = writeln!(
            o,
            "drover_rollout_batches{{rollout=\"{}\",status=\"{}\",of=\"done\"}} {}",
            r.id,
            esc(r.status.as_str()),
            r.next_batch
        );
    }
    head(&mut o, "drover_check_pass_seconds", "gauge", "How long the last check pass took.");
    let _ = writeln!(o, "drover_check_pass_seconds {:.3}", s.check_ms as f64 / 1000.0);
    head(&mut o, "drover_check_pass_timestamp_seconds", "gauge", "When the last check pass ended.");
    let _ = writeln!(o, "drover_check_pass_timestamp_seconds {:.3}", s.at_ms as f64 / 1000.0);
    o
}
