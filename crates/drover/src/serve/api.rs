//! HTTP routes: the embedded pages, the JSON API, the SSE stream,
//! `/metrics`, and operator actions.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::actions;
use super::auth::{self, Identity, Role};
use super::shared::Shared;

const INDEX: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const HOST_JS: &str = include_str!("web/host.js");
const RUNS_JS: &str = include_str!("web/runs.js");
const APP_CSS: &str = include_str!("web/app.css");
const COOKIE: &str = "drover_token";

pub(super) fn router(sh: Arc<Shared>) -> Router {
    let authed = Router::new()
        .route("/", get(|| async { page(INDEX, "text/html; charset=utf-8") }))
        .route("/app.js", get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/host.js", get(|| async { page(HOST_JS, "text/javascript; charset=utf-8") }))
        .route("/runs.js", get(|| async { page(RUNS_JS, "text/javascript; charset=utf-8") }))
        .route("/app.css", get(|| async { page(APP_CSS, "text/css; charset=utf-8") }))
        .route("/api/session", get(session))
        .route("/api/status", get(status))
        .route("/api/host/{name}", get(host))
        .route("/api/host/{name}/logs", get(host_logs))
        .route("/api/history", get(history))
        .route("/api/alerts", get(alerts))
        .route("/api/runs", get(super::runs::list))
        .route("/api/run/{id}", get(super::runs::one))
        .route("/api/events", get(events))
        .route("/api/action/{verb}", post(action))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(sh.clone(), authenticate));
    Router::new().route("/login", get(login)).merge(authed).with_state(sh)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({"error": msg.into()}))).into_response()
}

/// Without a token file (loopback only) everyone is the local operator —
/// but only when the page was reached by address or as `localhost`: a
/// domain of an attacker's that resolves to 127.0.0.1 (DNS rebinding) would
/// otherwise be same-origin with this server in the victim's browser.
async fn authenticate(State(sh): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let id = match &sh.tokens {
        None if !local_host_header(req.headers()) => {
            return error(
                StatusCode::FORBIDDEN,
                "without --token-file, open this server by its address (http://127.0.0.1:PORT) or as localhost",
            )
        }
        None => Identity { name: "local".into(), role: Role::Operator },
        Some(tokens) => match presented(req.headers()).and_then(|t| tokens.check(&t).cloned()) {
            Some(id) => id,
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "no valid token: open /login?token=YOUR_TOKEN, or send Authorization: Bearer YOUR_TOKEN",
                )
            }
        },
    };
    req.extensions_mut().insert(id);
    next.run(req).await
}

fn local_host_header(h: &HeaderMap) -> bool {
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else { return true };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn presented(h: &HeaderMap) -> Option<String> {
    if let Some(b) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(b.trim().to_string());
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
}

#[derive(Deserialize)]
struct LoginQuery {
    token: String,
}

async fn login(State(sh): State<Arc<Shared>>, Query(q): Query<LoginQuery>) -> Response {
    let known = sh.tokens.as_ref().is_none_or(|t| t.check(&q.token).is_some());
    if !known {
        return error(StatusCode::UNAUTHORIZED, "unknown token");
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", q.token);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn session(State(sh): State<Arc<Shared>>, Extension(id): Extension<Identity>) -> Response {
    let csrf = auth::csrf(&sh.csrf_key, &id.name);
    Json(serde_json::json!({"name": id.name, "role": id.role, "csrf": csrf})).into_response()
}

/// The snapshot: per host `status --json`'s row plus roles, groups, state.
async fn status(State(sh): State<Arc<Shared>>) -> Response {
    let s = sh.snapshot();
    let undelivered = sh.alerts.lock().unwrap_or_else(|e| e.into_inner()).undelivered();
    Json(serde_json::json!({
        "pass": s.pass, "at_ms": s.at_ms, "counts": s.counts(), "hosts": s.hosts,
        "rollout": s.rollout, "project_error": s.project_error, "problems": sh.problems(&s), "check_ms": s.check_ms,
        "undelivered": undelivered,
    }))
    .into_response()
}

/// The open alerts (`fired`: its firing message went out) and the messages
/// no webhook took.
async fn alerts(State(sh): State<Arc<Shared>>) -> Response {
    let a = sh.alerts.lock().unwrap_or_else(|e| e.into_inner());
    Json(serde_json::json!({"open": a.open(), "undelivered": a.undelivered()})).into_response()
}

async fn host(State(sh): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let s = sh.snapshot();
    let Some(h) = s.host(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no host `{name}` in the inventory"));
    };
    let generations = h.probe.as_ref().map(|p| p.state.generations.clone()).unwrap_or_default();
    let runs = match read_history(&sh, Some(name.clone()), 20, true).await {
        Ok(v) => serde_json::Value::Array(v),
        Err(e) => serde_json::json!({"error": e}),
    };
    Json(serde_json::json!({"host": h, "generations": generations, "runs": runs})).into_response()
}

/// The last lines of each of the host's services, fetched from the host on
/// request (the one thing a page asks a host directly: logs are not kept
/// in the snapshot); 15 s at most.
async fn host_logs(State(sh): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let services: Vec<String> = match sh.snapshot().host(&name) {
        None => return error(StatusCode::NOT_FOUND, format!("no host `{name}` in the inventory")),
        Some(h) => h.probe.iter().flat_map(|p| p.services.iter().map(|s| s.name.clone())).collect(),
    };
    let work = super::check::recent_logs(&sh, name, services, 20);
    match tokio::time::timeout(std::time::Duration::from_secs(15), work).await {
        Ok(Ok(lines)) => Json(serde_json::json!({"lines": lines})).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, e),
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "the host did not send its logs within 15 s"),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    host: Option<String>,
    limit: Option<i64>,
    #[serde(default)]
    plans: bool,
}

/// `history --json`'s rows, read on request (a short read transaction).
async fn history(State(sh): State<Arc<Shared>>, Query(q): Query<HistoryQuery>) -> Response {
    match read_history(&sh, q.host, q.limit.unwrap_or(50).clamp(1, 10_000), q.plans).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn read_history(
    sh: &Arc<Shared>,
    host: Option<String>,
    limit: i64,
    plans: bool,
) -> Result<Vec<serde_json::Value>, String> {
    let dir = sh.dir.clone();
    tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, String> {
        let store = crate::store::open(&dir).map_err(|e| format!("state store: {e:#}"))?;
        let rows = crate::run::status::history(&store, host.as_deref(), limit, plans).map_err(|e| e.to_string())?;
        let row = |(r, run): &(drover_state::HostResult, Option<drover_state::RunRow>)| {
            let mut v = crate::run::status::history_row(r, run.as_ref());
            v["bytes_sent_human"] = crate::human::bytes(u64::try_from(r.bytes_sent).unwrap_or(0)).into();
            v
        };
        Ok(rows.iter().map(row).collect())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// One `update` event per check pass (counts and the hosts that changed);
/// a page that fell behind gets `reload` and fetches the whole snapshot.
async fn events(State(sh): State<Arc<Shared>>) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = sh.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(msg) => Event::default().event("update").data(&*msg),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Event::default().event("reload").data("{}"),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(ev), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(sh): State<Arc<Shared>>) -> Response {
    let body = super::metrics::render(&sh.snapshot(), &sh.counters.lock().unwrap_or_else(|e| e.into_inner()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn action(
    State(sh): State<Arc<Shared>>,
    Extension(id): Extension<Identity>,
    Path(verb): Path<String>,
    headers: HeaderMap,
    Json(body): Json<super::actions::ActionBody>,
) -> Response {
    if id.role < Role::Operator {
        return error(StatusCode::FORBIDDEN, format!("`{}` is a viewer; actions need an operator token", id.name));
    }
    let given = headers.get("x-drover-csrf").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !auth::csrf_ok(&sh.csrf_key, &id.name, given) {
        return error(StatusCode::FORBIDDEN, "missing or wrong X-Drover-CSRF header (take it from /api/session)");
    }
    match actions::start(&sh, &id, &verb, body).await {
        Ok(msg) => (StatusCode::ACCEPTED, Json(serde_json::json!({"started": msg}))).into_response(),
        Err(actions::ActionError::Unknown(v)) => {
            error(StatusCode::NOT_FOUND, format!("no action `{v}` (apply, drain, undrain, check, rollout-start, rollout-pause, rollout-resume, rollout-abort)"))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
