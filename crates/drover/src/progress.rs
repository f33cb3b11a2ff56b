//! Live progress on stderr: one line per active host and a totals line.
//! Hidden when stderr is not a terminal or `--json` is given, so logs and
//! machine output stay clean.
//!
//! Hidden means not built at all: no bars, no ticker threads. A host's bar
//! has no steady tick of its own (indicatif starts an OS thread per ticking
//! bar): its spinner moves when its step changes, and the totals line, the
//! only bar that ticks, redraws the rest. With bars built for a hidden target
//! and a ticker per host, progress alone cost a 30,000-host no-op about a
//! quarter of its CPU (docs/benchmarks.md).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_state::Outcome;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
    pub counts: Arc<Counts>,
}

#[derive(Default)]
pub struct Counts {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// Not reached: counted apart from failures (a host that is down is
    /// not a deploy that went wrong).
    pub unreachable: AtomicU64,
    pub bytes: AtomicU64,
    pub hosts: AtomicU64,
}

impl Progress {
    /// Progress for `hosts` hosts; shown only if `visible` and stderr is a
    /// terminal.
    pub fn new(hosts: usize, visible: bool) -> Progress {
        Progress::with_target(hosts, visible && std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], with the terminal check already made.
    fn with_target(hosts: usize, visible: bool) -> Progress {
        let counts = Arc::new(Counts { hosts: AtomicU64::new(hosts as u64), ..Default::default() });
        if !visible {
            return Progress { multi: None, total: None, counts };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let total = multi.add(ProgressBar::new(hosts as u64));
        total.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} hosts  {msg}  [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.enable_steady_tick(Duration::from_millis(250));
        Progress { multi: Some(multi), total: Some(total), counts }
    }

    pub fn host(&self, name: &str) -> HostProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:<16} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(name.to_string());
            b
        });
        HostProgress { bar, parent: self.clone() }
    }

    fn refresh(&self) {
        if let Some(t) = &self.total {
            let c = &self.counts;
            let done = c.done.load(Ordering::Relaxed);
            let failed = c.failed.load(Ordering::Relaxed);
            let unreachable = c.unreachable.load(Ordering::Relaxed);
            let finished = done + failed + unreachable;
            t.set_position(finished);
            t.set_message(format!(
                "{done} ok, {failed} failed, {unreachable} unreachable, {} pending, {} sent",
                c.hosts.load(Ordering::Relaxed).saturating_sub(finished),
                crate::human::bytes(c.bytes.load(Ordering::Relaxed))
            ));
        }
    }

    pub fn finish(&self) {
        if let Some(t) = &self.total {
            t.finish_and_clear();
        }
    }
}

pub struct HostProgress {
    bar: Option<ProgressBar>,
    parent: Progress,
}

impl HostProgress {
    pub fn step(&self, msg: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(msg.into());
            // No ticker thread per host: the spinner moves on each step.
            b.tick();
        }
    }

    pub fn sent(&self, bytes: u64) {
        self.parent.counts.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.parent.refresh();
    }

    /// The host is done, with this outcome.
    pub fn finish(self, outcome: Outcome) {
        let counts = &self.parent.counts;
        let c = match outcome {
            Outcome::Unreachable => &counts.unreachable,
            o if o.is_failure() => &counts.failed,
            _ => &counts.done,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.parent.refresh();
        if let Some(b) = self.bar {
            b.finish_and_clear();
            if let Some(m) = &self.parent.multi {
                m.remove(&b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process (Linux).
    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn hidden_progress_builds_no_bars() {
        let p = Progress::with_target(3, false);
        assert!(p.multi.is_none() && p.total.is_none());
        let h = p.host("a");
        assert!(h.bar.is_none());
        h.step("connecting");
        h.sent(10);
        h.finish(Outcome::Changed);
        p.host("b").finish(Outcome::Unreachable);
        p.host("c").finish(Outcome::RolledBack);
        assert_eq!(p.counts.done.load(Ordering::Relaxed), 1);
        assert_eq!(p.counts.unreachable.load(Ordering::Relaxed), 1, "unreachable is not counted failed");
        assert_eq!(p.counts.failed.load(Ordering::Relaxed), 1);
        assert_eq!(p.counts.bytes.load(Ordering::Relaxed), 10);
    }

    /// Visible progress: the totals bar ticks on its own thread, a host's bar
    /// on none (a thread per host was a quarter of a large no-op's CPU).
    #[test]
    fn host_bars_start_no_thread_per_host() {
        let p = Progress::with_target(200, true);
        let before = threads();
        let bars: Vec<HostProgress> = (0..200).map(|i| p.host(&format!("h{i}"))).collect();
        for b in &bars {
            b.step("connecting");
        }
        // Other tests run in parallel threads: allow some slack, far below
        // one thread per host.
        let during = threads();
        assert!(during < before + 50, "{before} threads before 200 host bars, {during} with them");
        for b in bars {
            b.finish(Outcome::Unchanged);
        }
        assert_eq!(p.counts.done.load(Ordering::Relaxed), 200);
        p.finish();
    }
}
