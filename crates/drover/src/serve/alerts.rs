//! Alerts: `[[alert]]` rules evaluated on every snapshot, sent to webhooks.
//!
//! A condition (per host, or per rollout) must hold for the rule's `for`
//! before it fires; it fires once (deduplicated until it clears) and sends
//! a `resolved` message when it clears. Delivery never blocks the check
//! loop: each message is its own task, retried with exponential backoff
//! (1 s, 2 s, 4 s, 8 s; 10 s timeout per attempt), then given up with a
//! warning on stderr and listed as undelivered (the API and the page show
//! it until that webhook next takes a message).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_spec::{AlertFormat, AlertOn, AlertRule};

use super::snapshot::Snapshot;

/// Attempts per message: the first and four retries.
const ATTEMPTS: u32 = 5;

/// Undelivered messages kept for the page (the most recent).
const UNDELIVERED_KEPT: usize = 20;

/// A message given up on: shown until its webhook next answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Undelivered {
    pub alert: String,
    pub status: &'static str,
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
            self.alert, self.status, self.subject, self.webhook, self.attempts, self.error
        )
    }
}

type UndeliveredList = Arc<Mutex<VecDeque<Undelivered>>>;

#[derive(Default)]
pub struct Alerts {
    rules: Vec<AlertRule>,
    /// (rule name, subject) → since when the condition holds, and whether
    /// the firing message went out. Kept in the state store across restarts.
    open: HashMap<(String, String), (i64, bool)>,
    /// `open` changed since it was last saved.
    dirty: bool,
    client: Option<reqwest::Client>,
    /// Written by delivery tasks as they give up or succeed.
    undelivered: UndeliveredList,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    pub alert: String,
    pub status: &'static str,
    pub on: &'static str,
    pub subject: String,
    pub detail: String,
    pub at_ms: i64,
}

impl Alerts {
    /// The project's rules as of this pass (edits to drover.toml apply
    /// without a restart; open alerts of removed rules are dropped).
    pub fn set_rules(&mut self, rules: Vec<AlertRule>) {
        let before = self.open.len();
        self.open.retain(|(name, _), _| rules.iter().any(|r| &r.name == name));
        self.dirty |= self.open.len() != before;
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
        self.undelivered.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
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
                    out.push((rule.clone(), message(rule, "firing", subject, detail, now)));
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
                    out.push((rule.clone(), message(rule, "resolved", &key.1, "", now)));
                }
            }
        }
        if out.is_empty() {
            return;
        }
        let client = self.client.get_or_insert_with(|| {
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default()
        });
        for (rule, msg) in out {
            tokio::spawn(deliver(client.clone(), rule, msg, self.undelivered.clone()));
        }
    }
}

fn message(rule: &AlertRule, status: &'static str, subject: &str, detail: &str, at_ms: i64) -> Message {
    Message {
        alert: rule.name.clone(),
        status,
        on: rule.on.as_str(),
        subject: subject.into(),
        detail: detail.into(),
        at_ms,
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

fn payload(format: AlertFormat, m: &Message) -> serde_json::Value {
    match format {
        AlertFormat::Json => serde_json::to_value(m).unwrap_or_default(),
        AlertFormat::Slack => {
            let icon = if m.status == "firing" { ":red_circle:" } else { ":large_green_circle:" };
            let detail = if m.detail.is_empty() { String::new() } else { format!(" — {}", m.detail) };
            serde_json::json!({"text": format!("{icon} drover {} {}: {} ({}){detail}", m.alert, m.status, m.subject, m.on)})
        }
    }
}

async fn deliver(client: reqwest::Client, rule: AlertRule, msg: Message, undelivered: UndeliveredList) {
    let body = payload(rule.format, &msg);
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let err = match client.post(&rule.webhook).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                // The endpoint works again: what it missed is no longer news.
                undelivered.lock().unwrap_or_else(|e| e.into_inner()).retain(|u| u.webhook != rule.webhook);
                return;
            }
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            tracing::warn!(
                "alert {} ({} {}): giving up on {} after {ATTEMPTS} attempts: {err}",
                msg.alert,
                msg.status,
                msg.subject,
                rule.webhook
            );
            let mut list = undelivered.lock().unwrap_or_else(|e| e.into_inner());
            if list.len() == UNDELIVERED_KEPT {
                list.pop_front();
            }
            list.push_back(Undelivered {
                alert: msg.alert,
                status: msg.status,
                subject: msg.subject,
                webhook: rule.webhook,
                attempts: ATTEMPTS,
                error: err,
                at_ms: drover_state::now_ms(),
            });
            return;
        }
        tracing::info!("alert {}: {} answered {err}; retrying in {wait:?}", msg.alert, rule.webhook);
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}
