//! What `drover status` and `drover history` report, as data: the CLI
//! prints it, `drover serve` shows it and exports it as metrics. One
//! probe, one JSON shape, so the dashboard never disagrees with the CLI.

use drover_proto::{Facts, HostStatus, Request, Response};
use drover_spec::Host;
use drover_state::{HostResult, Store};

use crate::run::fleet::Fleet;

/// Each host's probe result: its status and the facts it reported, or why not.
pub type Probe = (String, Result<(HostStatus, Facts), String>);
pub type Probed = Vec<Probe>;

/// One `Status` round trip per host (the cheap read-only path: the agent
/// compares the current generation's manifest with the disk for drift and
/// asks the supervisor about services); errors are per host.
pub async fn probe(fleet: &Fleet, hosts: &[Host]) -> Probed {
    fleet
        .each(hosts, |_h, mut c| async move {
            let r = c.link.call(&Request::Status, &mut |_| {}).await.map_err(|e| e.to_string());
            let facts = std::mem::take(&mut c.facts);
            c.close().await;
            match r? {
                Response::Status(s) => Ok((s, facts)),
                other => Err(format!("unexpected reply {other:?}")),
            }
        })
        .await
}

/// Remember every reachable host's facts (other hosts' templates read them).
pub fn remember(store: &mut Store, results: &[Probe]) {
    for (host, res) in results {
        if let Ok((_, facts)) = res {
            crate::store::remember_facts(store, host, facts);
        }
    }
}

/// A host's `status --json` row.
pub fn row(host: &str, res: &Result<HostStatus, String>, last_run: &str) -> serde_json::Value {
    match res {
        Ok(s) => serde_json::json!({
            "host": host, "generation": s.state.current, "drift": s.drift, "services": s.services,
            "drained": s.drained, "pending_confirm": s.state.pending_confirm, "recovered": s.state.recovered, "last_run": last_run,
        }),
        Err(e) => serde_json::json!({"host": host, "error": e, "last_run": last_run}),
    }
}

/// A host's last recorded result, as `status` shows it: "ok (3m ago)".
pub fn last_run(last: Option<&HostResult>) -> String {
    last.map(|l| format!("{} ({})", l.outcome, ago(l.at_ms))).unwrap_or_else(|| "-".into())
}

pub fn ago(at_ms: i64) -> String {
    let s = (drover_state::now_ms() - at_ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

/// A `history --json` row.
pub fn history_row(r: &HostResult) -> serde_json::Value {
    serde_json::json!({"run": r.run_id, "host": r.host, "outcome": r.outcome, "generation": r.generation, "changes": r.changes, "bytes_sent": r.bytes_sent, "error": r.error, "at_ms": r.at_ms})
}
