//! Live progress on stderr: one line per active host and a totals line.
//! Hidden when stderr is not a terminal or `--json` is given, so logs and
//! machine output stay clean.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    pub bytes: AtomicU64,
    pub hosts: AtomicU64,
}

impl Progress {
    pub fn new(hosts: usize, visible: bool) -> Progress {
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
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        HostProgress { bar, parent: self.clone() }
    }

    fn refresh(&self) {
        if let Some(t) = &self.total {
            let c = &self.counts;
            let done = c.done.load(Ordering::Relaxed);
            let failed = c.failed.load(Ordering::Relaxed);
            t.set_position(done + failed);
            t.set_message(format!(
                "{done} ok, {failed} failed, {} pending, {} sent",
                c.hosts.load(Ordering::Relaxed).saturating_sub(done + failed),
                crate::report::human_bytes(c.bytes.load(Ordering::Relaxed))
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
        }
    }

    pub fn sent(&self, bytes: u64) {
        self.parent.counts.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.parent.refresh();
    }

    pub fn finish(self, failed: bool) {
        let c = if failed { &self.parent.counts.failed } else { &self.parent.counts.done };
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
