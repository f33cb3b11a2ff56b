//! Operator actions from the dashboard: `apply`, `drain`, `undrain`,
//! `check`, `rollout-start|pause|resume|abort`. Each is written to the
//! audit log under the token's name before it starts, then runs in the
//! background (the page follows it live); the deploy itself is an ordinary
//! recorded run that takes host locks.
//!
//! A rollout is driven by a child `drover rollout start` (or `resume`)
//! process: it behaves exactly as one started from a terminal — the same
//! locks, the same resume after a crash — and outlives a restart of the
//! server; pause and abort are the CLI's too.

use std::sync::Arc;

use drover_spec::Host;

use super::auth::Identity;
use super::shared::Shared;
use crate::run::fleet::Fleet;

#[derive(serde::Deserialize)]
pub(super) struct ActionBody {
    /// Host, group or role names, comma-separated; `all` or empty: every host.
    #[serde(default)]
    pub hosts: String,
    /// `drain`: why (required; shown by `drover status`, written to the
    /// audit log with the action).
    #[serde(default)]
    pub reason: Option<String>,
    /// `rollout-start`: hosts per batch or a percentage (else the policy's).
    #[serde(default)]
    pub batch: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no action `{0}`")]
    Unknown(String),
    #[error("{0}")]
    Refused(String),
}

pub(super) async fn start(
    sh: &Arc<Shared>,
    id: &Identity,
    verb: &str,
    body: ActionBody,
) -> Result<String, ActionError> {
    if !matches!(verb, "apply" | "drain" | "undrain" | "check") {
        return rollout(sh, id, verb, body).await;
    }
    let sel = match body.hosts.trim() {
        "" | "all" => None,
        s => Some(s.to_string()),
    };
    let reason = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_string);
    let mut args = sel.clone().unwrap_or_else(|| "all".into());
    if verb == "drain" {
        // As `drover drain` takes it, so the audit log reads like the CLI.
        let Some(r) = &reason else {
            return Err(ActionError::Refused("drain needs a reason (`reason` in the body): say why".into()));
        };
        let quoted = shlex::try_quote(r).map_err(|e| ActionError::Refused(format!("reason: {e}")))?;
        args = format!("{args} --reason {quoted}");
    }
    audit(sh, id, verb, &args).await?;
    if verb == "check" {
        sh.wake.notify_one();
        return Ok("check pass".into());
    }
    let dir = sh.dir.clone();
    let project = tokio::task::spawn_blocking(move || crate::store::load_project(&dir))
        .await
        .map_err(|e| ActionError::Refused(e.to_string()))?
        .map_err(|e| ActionError::Refused(format!("{e:#}")))?;
    let hosts: Vec<Host> =
        crate::select::select(&project.hosts, sel.as_deref()).map_err(|e| ActionError::Refused(format!("{e:#}")))?;
    let fleet = Fleet::new(&project, sh.simulate.as_deref()).map_err(|e| ActionError::Refused(format!("{e:#}")))?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let (sh2, verb2, who) = (sh.clone(), verb.to_string(), id.name.clone());
    let reason = format!("{} (drained by {who} from drover serve)", reason.unwrap_or_default());
    tokio::spawn(async move {
        let r = match verb2.as_str() {
            "apply" => {
                let args = format!("hosts={}", names.join(","));
                super::check::apply(&sh2, Arc::new(project), &fleet, hosts, "apply", &args, &who).await.map(|_| ())
            }
            v => crate::run::fleet::drain(&sh2.dir, &fleet, &hosts, v == "drain", &reason)
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:#}")),
        };
        if let Err(e) = r {
            tracing::warn!("{verb2} by {who}: {e}");
        }
        sh2.wake.notify_one();
    });
    Ok(format!("{verb} on {}", names_len(sh, &sel)))
}

async fn rollout(sh: &Arc<Shared>, id: &Identity, verb: &str, body: ActionBody) -> Result<String, ActionError> {
    let mut args: Vec<String> = match verb {
        "rollout-start" => vec!["rollout".into(), "start".into()],
        "rollout-resume" => vec!["rollout".into(), "resume".into()],
        "rollout-pause" => vec!["rollout".into(), "pause".into()],
        "rollout-abort" => vec!["rollout".into(), "abort".into()],
        _ => return Err(ActionError::Unknown(verb.into())),
    };
    let hosts = body.hosts.trim();
    let batch = body.batch.as_deref().map(str::trim).filter(|b| !b.is_empty());
    if verb == "rollout-start" {
        if !hosts.is_empty() && hosts != "all" {
            args.extend(["--hosts".into(), hosts.into()]);
        }
        if let Some(b) = batch {
            args.extend(["--batch".into(), b.into()]);
        }
    }
    audit(sh, id, verb, &args[2..].join(" ")).await?;
    let mut cmd =
        tokio::process::Command::new(std::env::current_exe().map_err(|e| ActionError::Refused(e.to_string()))?);
    cmd.arg("-C").arg(&sh.dir).args(&args).stdin(std::process::Stdio::null()).kill_on_drop(false);
    if matches!(verb, "rollout-pause" | "rollout-abort") {
        let out = cmd.output().await.map_err(|e| ActionError::Refused(e.to_string()))?;
        if !out.status.success() {
            return Err(ActionError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    if let Some(d) = &sh.simulate {
        cmd.arg("--simulate").arg(d);
    }
    let mut child = cmd
        .arg("--json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ActionError::Refused(format!("starting the rollout: {e}")))?;
    let (sh2, verb2, who) = (sh.clone(), verb.to_string(), id.name.clone());
    tokio::spawn(async move {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
        }
        match child.wait().await {
            Ok(s) if s.success() => {}
            r => tracing::warn!("{verb2} by {who} ended {r:?}: {}", err.trim()),
        }
        sh2.wake.notify_one();
    });
    Ok(verb.replace('-', " "))
}

fn names_len(sh: &Shared, sel: &Option<String>) -> String {
    match sel {
        None => format!("all {} hosts", sh.snapshot().hosts.len()),
        Some(s) => s.clone(),
    }
}

async fn audit(sh: &Arc<Shared>, id: &Identity, verb: &str, args: &str) -> Result<(), ActionError> {
    let (dir, user, command, args) = (sh.dir.clone(), id.name.clone(), format!("serve:{verb}"), args.to_string());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut store = crate::store::open(&dir)?;
        store.audit(&drover_state::AuditEntry {
            at_ms: drover_state::now_ms(),
            user,
            command,
            args,
            project_rev: crate::store::project_rev(&dir),
            run_id: None,
        })?;
        Ok(())
    })
    .await
    .map_err(|e| ActionError::Refused(e.to_string()))?
    .map_err(|e| ActionError::Refused(format!("audit log: {e:#}; nothing was started")))
}
