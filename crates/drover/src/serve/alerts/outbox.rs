//! Alert delivery: in order per subject, never blocking the check loop.
//!
//! Each (webhook, alert, subject) has its own queue, drained by one task at
//! a time: a message waits for the one before it on the same subject (its
//! retries included), so a receiver never sees `resolved` before the
//! `firing` it resolves, nor an older message after a newer one; different
//! subjects and webhooks go out concurrently, so a hanging endpoint holds
//! back only its own subjects. A message is retried with exponential
//! backoff (1 s, 2 s, 4 s, 8 s; 10 s timeout per attempt), then given up
//! with a warning and listed as undelivered; a `resolved` whose `firing`
//! was given up is not sent (the receiver never learned it fired).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_spec::{AlertFormat, AlertRule};

use super::{Message, Status, Undelivered};

/// Attempts per message: the first and four retries.
const ATTEMPTS: u32 = 5;

/// Undelivered messages kept for the page (the most recent).
const UNDELIVERED_KEPT: usize = 20;

pub(super) type UndeliveredList = Arc<Mutex<VecDeque<Undelivered>>>;

/// (webhook, alert, subject).
type Key = (String, String, String);
type Queues = Arc<Mutex<HashMap<Key, VecDeque<(AlertRule, Message)>>>>;

#[derive(Default)]
pub(super) struct Outbox {
    queues: Queues,
    client: Option<reqwest::Client>,
    /// Where delivery tasks run (the server's runtime); the current one
    /// when not set.
    handle: Option<tokio::runtime::Handle>,
    /// Written by delivery tasks as they give up or succeed.
    pub(super) undelivered: UndeliveredList,
}

impl Outbox {
    pub(super) fn deliver_on(&mut self, handle: tokio::runtime::Handle) {
        self.handle = Some(handle);
    }

    /// Queue `msg` behind the messages already queued for its subject.
    pub(super) fn send(&mut self, rule: AlertRule, msg: Message) {
        let key = (rule.webhook.clone(), msg.alert.clone(), msg.subject.clone());
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queues.get_mut(&key) {
            // A task is draining this subject's queue: it takes this too.
            q.push_back((rule, msg));
            return;
        }
        queues.insert(key.clone(), VecDeque::from([(rule, msg)]));
        drop(queues);
        let client = self
            .client
            .get_or_insert_with(|| {
                reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default()
            })
            .clone();
        let task = drain(key, self.queues.clone(), client, self.undelivered.clone());
        match &self.handle {
            Some(h) => drop(h.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

/// Send one subject's messages in order until its queue is empty (then
/// the queue goes, under the same lock a sender checks).
async fn drain(key: Key, queues: Queues, client: reqwest::Client, undelivered: UndeliveredList) {
    let mut firing_lost = false;
    loop {
        let next = {
            let mut q = queues.lock().unwrap_or_else(|e| e.into_inner());
            match q.get_mut(&key).and_then(VecDeque::pop_front) {
                Some(m) => m,
                None => {
                    q.remove(&key);
                    return;
                }
            }
        };
        let (rule, msg) = next;
        if msg.status == Status::Resolved && std::mem::take(&mut firing_lost) {
            tracing::warn!("alert {} ({}): not sending resolved: its firing was not delivered", msg.alert, msg.subject);
            continue;
        }
        let delivered = deliver(&client, &rule, &msg, &undelivered).await;
        firing_lost = msg.status == Status::Firing && !delivered;
    }
}

/// `at_ms` as `2026-12-05 04:12:09 UTC` (Slack shows it).
pub(super) fn utc(at_ms: i64) -> String {
    crate::human::utc(u64::try_from(at_ms).unwrap_or(0))
}

fn payload(format: AlertFormat, m: &Message) -> serde_json::Value {
    match format {
        AlertFormat::Json => serde_json::to_value(m).unwrap_or_default(),
        AlertFormat::Slack => {
            let icon = if m.status == Status::Firing { ":red_circle:" } else { ":large_green_circle:" };
            let detail = if m.detail.is_empty() { String::new() } else { format!(" — {}", m.detail) };
            let text = format!(
                "{icon} drover {} {}: {} ({}){detail} · {} · #{}",
                m.alert,
                m.status.as_str(),
                m.subject,
                m.on,
                utc(m.at_ms),
                m.seq
            );
            serde_json::json!({"text": text})
        }
    }
}

/// Send `msg`, retrying; whether the webhook took it.
async fn deliver(client: &reqwest::Client, rule: &AlertRule, msg: &Message, undelivered: &UndeliveredList) -> bool {
    let body = payload(rule.format, msg);
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let err = match client.post(&rule.webhook).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                // The endpoint works again: what it missed is no longer news.
                undelivered.lock().unwrap_or_else(|e| e.into_inner()).retain(|u| u.webhook != rule.webhook);
                return true;
            }
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            tracing::warn!(
                "alert {} ({} {}): giving up on {} after {ATTEMPTS} attempts: {err}",
                msg.alert,
                msg.status.as_str(),
                msg.subject,
                rule.webhook
            );
            let mut list = undelivered.lock().unwrap_or_else(|e| e.into_inner());
            if list.len() == UNDELIVERED_KEPT {
                list.pop_front();
            }
            list.push_back(Undelivered {
                alert: msg.alert.clone(),
                status: msg.status,
                subject: msg.subject.clone(),
                webhook: rule.webhook.clone(),
                attempts: ATTEMPTS,
                error: err,
                at_ms: drover_state::now_ms(),
            });
            return false;
        }
        tracing::info!("alert {}: {} answered {err}; retrying in {wait:?}", msg.alert, rule.webhook);
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_443_929_000), "2026-12-05 04:12:09 UTC");
    }
}
