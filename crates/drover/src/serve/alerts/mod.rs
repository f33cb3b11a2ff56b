//! Alerts: `[[alert]]` rules evaluated on every snapshot, sent to webhooks.
//!
//! A condition (per host, or per rollout) must hold for the rule's `for`
//! before it fires; it fires once (deduplicated until it clears) and sends
//! a `resolved` message when it clears. Every message carries its
//! subject's sequence number (`seq`) and its time; delivery ([`outbox`])
//! keeps each subject's messages in order and never blocks the check loop
//! (given up after retries, a message is listed as undelivered: the API
//! and the page show it until that webhook next takes a message).

mod outbox;

use std::collections::HashMap;
use std::time::Duration;

use drover_spec::{AlertOn, AlertRule};

use super::snapshot::Snapshot;

/// Whether a message says an alert fired or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// A message given up on: shown until its webhook next answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Undelivered {
    pub alert: String,
    pub status: Status,
    pub subject: String,
    pub webhook: String,
    pub attempts: u32,
    pub error: String,
    pub at_ms: i64,
}

impl Undelivered {
    /// One line for the page's problem banner.
    pub fn line(&self) -> String {
        format!(
            "alert {} ({} {}) not delivered: {} gave up after {} attempts: {}",
            self.alert,
            self.status.as_str(),
            self.subject,
            self.webhook,
            self.attempts,
            self.error
        )
    }
}

#[derive(Default)]
pub struct Alerts {
    rules: Vec<AlertRule>,
    /// (rule name, subject) → since when the condition holds, and whether
    /// the firing message went out. Kept in the state store across restarts.
    open: HashMap<(String, String), (i64, bool)>,
    /// `open` changed since it was last saved.
    dirty: bool,
    /// (rule name, subject) → the last message's sequence number.
    seqs: HashMap<(String, String), u64>,
    outbox: outbox::Outbox,
}

/// What a webhook gets (format `json`; Slack gets it as one line of text).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    pub alert: String,
    pub status: Status,
    pub on: &'static str,
    pub subject: String,
    pub detail: String,
    /// Per (alert, subject), strictly increasing: a receiver orders and
    /// deduplicates by it. It starts from the clock (ms), so it keeps
    /// increasing across server restarts.
    pub seq: u64,
    pub at_ms: i64,
    /// `at_ms` as `2026-12-05 04:12:09 UTC`.
    pub at: String,
}

/// An open alert as `/api/alerts` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpenView {
    pub alert: String,
    pub subject: String,
    pub since_ms: i64,
    /// Its firing message went out (the condition held for the rule's
    /// `for`): a receiver has it open.
    pub fired: bool,
}

impl Alerts {
    /// The project's rules as of this pass (edits to drover.toml apply
    /// without a restart; open alerts of removed rules are dropped).
    pub fn set_rules(&mut self, rules: Vec<AlertRule>) {
        let before = self.open.len();
        self.open.retain(|(name, _), _| rules.iter().any(|r| &r.name == name));
        self.dirty |= self.open.len() != before;
        self.seqs.retain(|(name, _), _| rules.iter().any(|r| &r.name == name));
        self.rules = rules;
    }

    /// The alerts a previous server left open (before the first pass).
    pub fn restore(&mut self, saved: Vec<drover_state::OpenAlert>) {
        self.open = saved.into_iter().map(|a| ((a.rule, a.subject), (a.since_ms, a.fired))).collect();
    }

    /// The open alerts to save, if they changed since the last call.
    pub fn take_changes(&mut self) -> Option<Vec<drover_state::OpenAlert>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let list = self
            .open
            .iter()
            .map(|((rule, subject), (since_ms, fired))| drover_state::OpenAlert {
                rule: rule.clone(),
                subject: subject.clone(),
                since_ms: *since_ms,
                fired: *fired,
            })
            .collect();
        Some(list)
    }

    /// Saving failed (the store busy): try again after the next pass.
    pub fn unsaved(&mut self) {
        self.dirty = true;
    }

    /// Messages given up on whose webhook has not answered since, oldest
    /// first.
    pub fn undelivered(&self) -> Vec<Undelivered> {
        self.outbox.undelivered.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Deliver on `handle` (the server's runtime, not a pass's).
    pub fn deliver_on(&mut self, handle: tokio::runtime::Handle) {
        self.outbox.deliver_on(handle);
    }

    /// The open alerts, by alert then subject.
    pub fn open(&self) -> Vec<OpenView> {
        let mut v: Vec<OpenView> = self
            .open
            .iter()
            .map(|((alert, subject), (since_ms, fired))| OpenView {
                alert: alert.clone(),
                subject: subject.clone(),
                since_ms: *since_ms,
                fired: *fired,
            })
            .collect();
        v.sort_by(|a, b| (&a.alert, &a.subject).cmp(&(&b.alert, &b.subject)));
        v
    }

    /// The next sequence number for (rule, subject).
    fn next_seq(&mut self, rule: &str, subject: &str, now: i64) -> u64 {
        let clock = u64::try_from(now).unwrap_or(0);
        let seq = self.seqs.entry((rule.to_string(), subject.to_string())).or_insert(0);
        *seq = (*seq + 1).max(clock);
        *seq
    }

    /// Compare `snap` with what is open; send what fired or resolved.
    pub fn evaluate(&mut self, snap: &Snapshot) {
        if self.rules.is_empty() {
            return;
        }
        let now = drover_state::now_ms();
        let mut out = Vec::new();
        for rule in &self.rules {
            let now_true = subjects(rule.on, snap);
            for (subject, detail) in &now_true {
                let key = (rule.name.clone(), subject.clone());
                let new = !self.open.contains_key(&key);
                self.dirty |= new;
                let (since, fired) = self.open.entry(key).or_insert((now, false));
                let held = Duration::from_millis(u64::try_from(now - *since).unwrap_or(0));
                if !*fired && held >= rule.hold {
                    *fired = true;
                    self.dirty = true;
                    out.push((rule.clone(), Status::Firing, subject.clone(), detail.clone()));
                }
            }
            let gone: Vec<(String, String)> = self
                .open
                .keys()
                .filter(|(name, subject)| *name == rule.name && !now_true.contains_key(subject))
                .cloned()
                .collect();
            self.dirty |= !gone.is_empty();
            for key in gone {
                if let Some((_, true)) = self.open.remove(&key) {
                    out.push((rule.clone(), Status::Resolved, key.1, String::new()));
                }
            }
        }
        for (rule, status, subject, detail) in out {
            let seq = self.next_seq(&rule.name, &subject, now);
            let msg = Message {
                alert: rule.name.clone(),
                status,
                on: rule.on.as_str(),
                subject,
                detail,
                seq,
                at_ms: now,
                at: outbox::utc(now),
            };
            self.outbox.send(rule, msg);
        }
    }
}

/// Who the condition holds for now, with a word on why.
fn subjects(on: AlertOn, s: &Snapshot) -> HashMap<String, String> {
    let mut m = HashMap::new();
    match on {
        AlertOn::RolloutFailed | AlertOn::RolloutPaused => {
            use drover_state::RolloutStatus;
            let want = if on == AlertOn::RolloutFailed { RolloutStatus::Failed } else { RolloutStatus::Paused };
            if let Some(r) = s.rollout.as_ref().filter(|r| r.status == want) {
                m.insert(format!("rollout {}", r.id), format!("batch {} of {}", r.next_batch + 1, r.batches.len()));
            }
        }
        _ => {
            for h in &s.hosts {
                let why =
                    match (on, &h.probe) {
                        (AlertOn::Unreachable, Err(e)) => Some(e.clone()),
                        // A drained host's services are stopped on purpose.
                        (AlertOn::Unhealthy, Ok(p)) if p.drained.is_none() => {
                            let bad: Vec<&str> =
                                p.services.iter().filter(|v| !v.is_up()).map(|v| v.name.as_str()).collect();
                            (!bad.is_empty()).then(|| format!("failing health: {}", bad.join(", ")))
                        }
                        (AlertOn::Drifted, Ok(p)) => {
                            (!p.drift.is_empty()).then(|| format!("drift: {}", p.drift.join(", ")))
                        }
                        (AlertOn::ApplyFailed, _) => h.last.as_ref().filter(|l| apply_failed(l.outcome)).map(|l| {
                            format!("run {} {}: {}", l.run_id, l.outcome, l.error.clone().unwrap_or_default())
                        }),
                        _ => None,
                    };
                if let Some(w) = why {
                    m.insert(h.host.clone(), w);
                }
            }
        }
    }
    m
}

/// What `apply-failed` fires on: the last run failed or rolled back. Not
/// `unreachable`: the `unreachable` alert is about the host now (its
/// probe), and one down host should not fire both.
fn apply_failed(outcome: drover_state::Outcome) -> bool {
    use drover_state::Outcome as O;
    match outcome {
        O::Failed | O::RolledBack => true,
        // Activated: a run still going (or abandoned) between activation and
        // its end; not a failure of the host (it reverts by itself unless
        // confirmed, and the probe then says where it is).
        O::Unreachable | O::Unchanged | O::Planned | O::Changed | O::Activated | O::Rebooted | O::Skipped => false,
    }
}
