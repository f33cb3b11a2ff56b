//! What `drover status` and `drover history` report, as data: the CLI
//! prints it, `drover serve` shows it and exports it as metrics. One
//! probe, one JSON shape, so the dashboard never disagrees with the CLI.

use drover_proto::{Facts, HostStatus, Request, Response};
use drover_spec::Host;
use drover_state::{HostResult, Store};

use crate::run::fleet::Fleet;

/// Whether a host runs what the project compiles for it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Currency {
    /// Its generation is the project's desired state.
    Current,
    /// An apply would make a new generation: it missed a release, was
    /// rolled back, or the project changed since.
    Behind,
    /// Could not tell (the project does not compile for it, say).
    Unknown(String),
}

/// A host's [`probe_against`] result: status, facts and currency, or why not.
pub type Judged = (String, Result<(HostStatus, Facts, Currency), String>);

/// One `Status` round trip per host (the cheap read-only path: the agent
/// compares the current generation's manifest with the disk for drift and
/// asks the supervisor about services), and whether each host is on the
/// project's desired state (`source` compiled for it with the facts it just
/// reported): one connection per host, errors per host.
pub async fn probe_against(
    fleet: &Fleet,
    hosts: &[Host],
    source: std::sync::Arc<dyn crate::host::StateSource>,
) -> Vec<Judged> {
    fleet
        .each(hosts, move |h, mut c| {
            let source = source.clone();
            async move {
                let status = match c.link.call(&Request::Status, &mut |_| {}).await {
                    Ok(Response::Status(s)) => Ok(s),
                    Ok(other) => Err(format!("unexpected reply {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                let judged = match status {
                    Ok(status) => {
                        let currency = match crate::host::is_current(&*source, &h, &mut c).await {
                            Ok(true) => Currency::Current,
                            Ok(false) => Currency::Behind,
                            Err(e) => Currency::Unknown(e.to_string()),
                        };
                        Ok((status, std::mem::take(&mut c.facts), currency))
                    }
                    Err(e) => Err(e),
                };
                c.close().await;
                judged
            }
        })
        .await
}

/// Remember every reachable host's facts (other hosts' templates read them).
pub fn remember(store: &mut Store, results: &[Judged]) {
    for (host, res) in results {
        if let Ok((_, facts, _)) = res {
            crate::store::remember_facts(store, host, facts);
        }
    }
}

/// A host's state as `status` shows it, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Not reached.
    Unreachable,
    /// Whether it is on the project's desired state could not be told.
    Unknown,
    /// A service is not running (the supervisor says so: a crash loop is
    /// not running, whatever its probe reaches), or fails its health check.
    Unhealthy,
    /// Managed files were edited on the host.
    Drifted,
    /// Not on the project's desired state (see [`Currency::Behind`]).
    Behind,
    /// Drained by an operator: its services are stopped on purpose.
    Drained,
    Converged,
}

impl Verdict {
    pub fn of(s: &HostStatus, currency: &Currency) -> Verdict {
        if s.drained.is_some() {
            Verdict::Drained
        } else if s.services.iter().any(|sv| !sv.is_up()) {
            Verdict::Unhealthy
        } else if !s.drift.is_empty() {
            Verdict::Drifted
        } else {
            match currency {
                Currency::Behind => Verdict::Behind,
                Currency::Unknown(_) => Verdict::Unknown,
                Currency::Current => Verdict::Converged,
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unreachable => "unreachable",
            Verdict::Unknown => "unknown",
            Verdict::Unhealthy => "unhealthy",
            Verdict::Drifted => "drifted",
            Verdict::Behind => "behind",
            Verdict::Drained => "drained",
            Verdict::Converged => "converged",
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

/// A `history --json` row: the host's result (its `error` whole, however
/// many lines), and its run's command, operator and project revision.
pub fn history_row(r: &HostResult, run: Option<&drover_state::RunRow>) -> serde_json::Value {
    serde_json::json!({
        "run": r.run_id, "host": r.host, "outcome": r.outcome, "generation": r.generation, "changes": r.changes,
        "bytes_sent": r.bytes_sent, "error": r.error, "failure": failure(r), "at_ms": r.at_ms,
        "command": run.map(|x| x.command.as_str()), "user": run.map(|x| x.user.as_str()),
        "project_rev": run.map(|x| x.project_rev.as_str()), "run_status": run.map(run_status),
    })
}

/// A run's status as history shows it: one whose lease ran out is
/// abandoned even before the next run marks it so in the store.
fn run_status(run: &drover_state::RunRow) -> drover_state::RunStatus {
    if run.is_orphaned(drover_state::now_ms()) {
        drover_state::RunStatus::Abandoned
    } else {
        run.status
    }
}

/// A history row's error cell: an abandoned run's hosts say so first (the
/// controller stopped between this host's activation and the run's end).
pub fn history_error(r: &HostResult, run: Option<&drover_state::RunRow>) -> String {
    let e = first_line(r.error.as_deref().unwrap_or_default());
    match run.map(run_status) {
        Some(drover_state::RunStatus::Abandoned) => {
            format!("run abandoned: its controller stopped (killed or lost) before the end; {e}")
        }
        _ => e,
    }
}

/// An error as one table cell: its first line, and "…" when there is more
/// (a dpkg failure is dozens of lines; `--json` has them all).
pub fn first_line(e: &str) -> String {
    let e = e.trim();
    match e.split_once('\n') {
        Some((first, _)) => format!("{} …", first.trim_end()),
        None => e.to_string(),
    }
}

/// Each host's results, newest first, as `drover history` shows them: at
/// most `limit`, plan runs left out unless `plans` (a plan changes nothing:
/// counted among deploys it would hide them), each with its run.
pub fn history(
    store: &Store,
    host: Option<&str>,
    limit: i64,
    plans: bool,
) -> Result<Vec<(HostResult, Option<drover_state::RunRow>)>, drover_state::StateError> {
    let runs: std::collections::HashMap<i64, drover_state::RunRow> =
        store.runs(100_000)?.into_iter().map(|r| (r.id, r)).collect();
    let keep = |r: &HostResult| plans || runs.get(&r.run_id).is_none_or(|x| x.command != "plan");
    let mut ask = limit.max(1);
    loop {
        let rows = store.history(host, ask)?;
        let exhausted = (rows.len() as i64) < ask;
        let kept: Vec<HostResult> = rows.into_iter().filter(keep).collect();
        if kept.len() as i64 >= limit || exhausted {
            let out = kept.into_iter().take(usize::try_from(limit).unwrap_or(0));
            return Ok(out
                .map(|r| {
                    let run = runs.get(&r.run_id).cloned();
                    (r, run)
                })
                .collect());
        }
        ask = ask.saturating_mul(4);
    }
}

/// The failed service's report (state, exit code, log lines) from a stored
/// run detail, when there was one.
fn failure(r: &HostResult) -> Option<serde_json::Value> {
    let detail = serde_json::from_str::<serde_json::Value>(&r.detail).ok()?;
    Some(detail["failure"].clone()).filter(|f| !f.is_null())
}
