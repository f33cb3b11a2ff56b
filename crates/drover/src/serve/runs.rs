//! The runs page's data: one row per run (not per host) with its command,
//! operator, project revision, hosts by outcome and sizes people read; and
//! one run's hosts with the phases of each (the page's timeline).
//!
//! Read on request in a short read transaction, as `/api/history` is; the
//! list adds each run's results up in the store (`run_totals`) rather than
//! reading every host's report.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_state::{RunRow, RunTotal};
use serde::Deserialize;
use serde_json::{json, Value};

use super::shared::Shared;
use crate::human;

/// Runs read to find `limit` worth showing (check passes that touched no
/// host are skipped unless asked for).
const SCAN: i64 = 5_000;

#[derive(Deserialize)]
pub(super) struct RunsQuery {
    limit: Option<usize>,
    /// Also list `reconcile` passes that touched no host.
    #[serde(default)]
    passes: bool,
}

fn error(code: StatusCode, msg: String) -> Response {
    (code, Json(json!({"error": msg}))).into_response()
}

/// `GET /api/runs?limit=&passes=`: newest first.
pub(super) async fn list(State(sh): State<Arc<Shared>>, Query(q): Query<RunsQuery>) -> Response {
    let dir = sh.dir.clone();
    let limit = q.limit.unwrap_or(50).clamp(1, 1_000);
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, String> {
        let store = crate::store::open(&dir).map_err(|e| format!("state store: {e:#}"))?;
        let runs = store.runs(SCAN).map_err(|e| e.to_string())?;
        let Some(oldest) = runs.last().map(|r| r.id) else { return Ok(Vec::new()) };
        let mut totals: BTreeMap<i64, Vec<RunTotal>> = BTreeMap::new();
        for t in store.run_totals(oldest).map_err(|e| e.to_string())? {
            totals.entry(t.run_id).or_default().push(t);
        }
        let shown = runs.iter().filter(|r| q.passes || r.command != "reconcile" || totals.contains_key(&r.id));
        Ok(shown.take(limit).map(|r| summary(r, totals.get(&r.id).map_or(&[][..], Vec::as_slice))).collect())
    })
    .await;
    match read {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A run as one row: who ran what from which revision, how long it took,
/// its hosts by outcome, and what it sent.
fn summary(r: &RunRow, totals: &[RunTotal]) -> Value {
    let outcomes: BTreeMap<&str, i64> = totals.iter().map(|t| (t.outcome.as_str(), t.hosts)).collect();
    let bytes: i64 = totals.iter().map(|t| t.bytes_sent).sum();
    json!({
        "id": r.id, "command": r.command, "args": r.args, "user": r.user, "project_rev": r.project_rev,
        "status": r.status, "started_ms": r.started_ms, "finished_ms": r.finished_ms,
        "duration_ms": r.finished_ms.map(|f| (f - r.started_ms).max(0)),
        "hosts": totals.iter().map(|t| t.hosts).sum::<i64>(), "outcomes": outcomes,
        "changes": totals.iter().map(|t| t.changes).sum::<i64>(),
        "bytes_sent": bytes, "bytes_sent_human": human::bytes(u64::try_from(bytes).unwrap_or(0)),
    })
}

/// `GET /api/run/ID`: the run's row and each host's result with the phases
/// of its stored report (where its time went) and when it began.
pub(super) async fn one(State(sh): State<Arc<Shared>>, Path(id): Path<i64>) -> Response {
    let dir = sh.dir.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<Option<Value>, String> {
        let store = crate::store::open(&dir).map_err(|e| format!("state store: {e:#}"))?;
        // Runs are numbered in order: the run is among the newest `n`.
        let newest = store.runs(1).map_err(|e| e.to_string())?.first().map_or(0, |r| r.id);
        let scan = (newest - id + 1).clamp(1, i64::MAX);
        let runs = store.runs(scan).map_err(|e| e.to_string())?;
        let Some(run) = runs.iter().find(|r| r.id == id) else { return Ok(None) };
        let results = store.run_results(id).map_err(|e| e.to_string())?;
        let totals = store.run_totals(id).map_err(|e| e.to_string())?;
        let totals: Vec<RunTotal> = totals.into_iter().filter(|t| t.run_id == id).collect();
        let hosts: Vec<Value> = results.iter().map(host_row).collect();
        Ok(Some(json!({"run": summary(run, &totals), "hosts": hosts})))
    })
    .await;
    match read {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// One host of a run: its result, when it began (from its report; else
/// its end less its duration) and its phases in milliseconds.
fn host_row(r: &drover_state::HostResult) -> Value {
    let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
    let started = detail["started_ms"].as_i64().unwrap_or(r.at_ms - r.duration_ms);
    json!({
        "host": r.host, "outcome": r.outcome, "generation": r.generation, "changes": r.changes,
        "bytes_sent": r.bytes_sent, "bytes_sent_human": human::bytes(u64::try_from(r.bytes_sent).unwrap_or(0)),
        "duration_ms": r.duration_ms, "started_ms": started, "error": r.error,
        "phases": detail.get("phases").cloned().unwrap_or(Value::Null),
    })
}
