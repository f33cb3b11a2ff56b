//! Rebooting one host as a step of its session: `apply --reboot` (and `reboot = true` in a
//! rollout policy), `rollout start --reboot`, `drover reboot TARGET`.
//!
//! After activation the controller sends `Reboot` in the same session; the
//! agent installs its boot-time hook, marks the unconfirmed generation and
//! reboots. The controller then reconnects (a new SSH connection each try)
//! until the host answers *from a later boot* (the hook counts boots), checks
//! its services' health and confirms. If it cannot (SSH broken by the new
//! generation, services unhealthy), it does not confirm: the host reverts by
//! itself at the deadline and reboots once more into the previous
//! generation, and the controller, still waiting, finds it there and reports
//! it rolled back with the agent's reason. See `docs/operations.md`,
//! "Reboots".

use std::time::{Duration, Instant};

use drover_proto::{HostState, Request, Response};
use drover_spec::Host;

use super::error::HostError;
use super::job::{Job, RebootPlan};
use super::report::{HostReport, Outcome};
use crate::progress::HostProgress;
use crate::transport::Connection;

/// Refused before any host is touched: simulated hosts are directories on
/// this machine, and no agent may reboot it.
pub fn refuse_simulated(reboot: Option<&RebootPlan>, simulate: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let (Some(_), Some(dir)) = (reboot, simulate) {
        anyhow::bail!(
            "--simulate {}: simulated hosts cannot reboot (this machine would be the one rebooted); drop --reboot, or `reboot = true` from the [rollout] policy, to simulate",
            dir.display()
        );
    }
    Ok(())
}

/// How a host came back.
#[derive(Debug)]
enum Returned {
    /// On the generation it was rebooted with, healthy, confirmed.
    Confirmed { generation: Option<u64> },
    /// On another generation than the one it was rebooted with: the agent
    /// reverted it (`reason`, from its report).
    RolledBack { now: Option<u64>, reason: String },
}

/// `drover reboot`, one host: refused while a generation awaits
/// confirmation (the reboot would decide its fate by accident); else reboot
/// and wait until it is back, healthy.
pub(crate) async fn reboot_only(
    job: &Job,
    host: &Host,
    mut conn: Connection,
    r: &mut HostReport,
    p: &HostProgress,
) -> Result<(), HostError> {
    if let Some(g) = conn.state.pending_confirm {
        conn.close().await;
        return Err(HostError::AwaitingConfirm(g));
    }
    let plan = job.reboot.clone().unwrap_or(RebootPlan::every_host(Duration::from_secs(300)));
    let boots = request(job, &mut conn, plan.timeout).await?;
    conn.close().await;
    r.rebooted = true;
    await_return(job, host, &plan, boots, None, p).await?;
    r.outcome = Outcome::Rebooted;
    Ok(())
}

/// `generation` was just activated over `conn`: reboot, wait, confirm after
/// the boot, and report where the host ended up.
pub(crate) async fn after_activation(
    job: &Job,
    host: &Host,
    plan: &RebootPlan,
    mut conn: Connection,
    generation: u64,
    r: &mut HostReport,
    p: &HostProgress,
) -> Result<(), HostError> {
    r.generation = Some(generation);
    p.step("activated; rebooting");
    let boots = request(job, &mut conn, plan.timeout).await?;
    conn.close().await;
    r.rebooted = true;
    let pending = job.confirm_timeout.map(|_| generation);
    match await_return(job, host, plan, boots, pending, p).await? {
        Returned::Confirmed { generation } => {
            r.generation = generation;
            r.outcome = Outcome::Changed;
        }
        Returned::RolledBack { now, reason } => {
            r.generation = now;
            r.outcome = Outcome::RolledBack;
            r.error = Some(reason);
        }
    }
    Ok(())
}

/// Ask the agent to reboot (after `Apply`, in the same session). Returns the
/// boot count before the reboot.
async fn request(job: &Job, conn: &mut Connection, timeout: Duration) -> Result<u64, HostError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // The boot hook checks the agent the host runs, which is the one for
    // its machine (#30), not necessarily the controller's.
    let agent = conn.agent().ok_or_else(|| {
        HostError::RebootRefused(format!("this drover carries no agent for the host's machine ({})", conn.facts.arch))
    })?;
    let req = Request::Reboot {
        confirm_timeout_ms: ms(job.confirm_timeout.unwrap_or_default()),
        boot_timeout_ms: ms(timeout),
        agent_sha256: agent.sha256_hex().to_string(),
    };
    // Not retried: a retry would find the generation awaiting confirmation
    // and confirm it without checking the host after its boot.
    let reply = conn.link.call(&req, &mut |_| {}).await.map_err(|e| HostError::RebootUnanswered(e.to_string()))?;
    match reply {
        Response::Rebooting { boots } => Ok(boots),
        Response::Error { message } => Err(HostError::RebootRefused(message)),
        other => Err(HostError::unexpected("Reboot", &other)),
    }
}

/// Wait for the host to come back from the reboot requested at boot count
/// `boots`, then confirm `generation` (if one awaits confirmation) once its
/// services are healthy.
///
/// The wait covers the reboot, the agent's confirm window and a second
/// reboot (the revert's): a host whose new generation broke SSH is only
/// reachable again after all three.
async fn await_return(
    job: &Job,
    host: &Host,
    plan: &RebootPlan,
    boots: u64,
    generation: Option<u64>,
    p: &HostProgress,
) -> Result<Returned, HostError> {
    let waited = plan.timeout * 2 + job.confirm_timeout.unwrap_or_default();
    let deadline = Instant::now() + waited;
    let mut last = String::from("no answer yet");
    let mut unhealthy: Option<String> = None;
    p.step("rebooting");
    loop {
        if Instant::now() > deadline {
            let why = match unhealthy {
                Some(u) => format!("services unhealthy after the reboot ({u}); then {last}"),
                None => last,
            };
            return Err(HostError::NotBack { waited, why });
        }
        let mut conn = match job.transport.connect(host, job.timeouts).await {
            Ok(c) => c,
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let state = conn.state.clone();
        if state.boots <= boots {
            last = "not rebooted yet".into();
            conn.close().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        p.step("back from the reboot; checking health");
        if let Some(g) = generation {
            if state.current != Some(g) {
                // Reverted. The watchdog reboots once more into the old
                // generation: wait for that boot too, so the host is left
                // as it will stay.
                let reason = reverted_reason(&state, g, unhealthy.as_deref());
                let rebooting_again = state.recovered.as_deref().is_some_and(|r| r.contains("rebooting once"));
                conn.close().await;
                if rebooting_again && state.boots < boots + 2 && Instant::now() < deadline {
                    last = "reverted; waiting for its second reboot".into();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                return Ok(Returned::RolledBack { now: state.current, reason });
            }
        }
        match health(&mut conn, job.confirm_timeout.unwrap_or_default() / 2).await {
            Ok(()) => {}
            Err(Unhealthy::Lost(e)) => {
                // Going down again (the revert's reboot, say): keep waiting.
                last = e;
                conn.close().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(Unhealthy::Services(why)) => {
                // Not confirmed: the agent reverts at its deadline and
                // reboots; keep waiting to report where it ends up.
                p.step(format!("unhealthy after the reboot ({why}); not confirming"));
                unhealthy = Some(why);
                conn.close().await;
                if generation.is_none() {
                    return Err(HostError::UnhealthyAfterReboot(unhealthy.unwrap_or_default()));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        if let Some(g) = generation.filter(|g| state.pending_confirm == Some(*g)) {
            p.step("confirming after the reboot");
            super::confirm::confirmed(conn.link.call(&Request::Confirm { generation: g }, &mut |_| {}).await?)?;
        }
        conn.close().await;
        return Ok(Returned::Confirmed { generation: state.current });
    }
}

/// Why a host back from a reboot is not confirmed (yet).
enum Unhealthy {
    /// A service's health check fails: the reason reported.
    Services(String),
    /// The connection ended: the host is going down again.
    Lost(String),
}

/// Every service with a health check passes it, retried while the host's
/// services are still starting (up to `within`).
async fn health(conn: &mut Connection, within: Duration) -> Result<(), Unhealthy> {
    let until = Instant::now() + within;
    loop {
        let reply = conn.link.call(&Request::Status, &mut |_| {}).await.map_err(|e| Unhealthy::Lost(e.to_string()))?;
        let bad = match reply {
            Response::Status(s) => s
                .services
                .iter()
                .filter(|sv| !sv.is_up())
                .map(|sv| format!("{}: {}; {}", sv.name, sv.state, sv.detail))
                .collect::<Vec<_>>(),
            other => return Err(Unhealthy::Lost(format!("unexpected reply to Status: {other:?}"))),
        };
        if bad.is_empty() {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(Unhealthy::Services(bad.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn reverted_reason(state: &HostState, generation: u64, unhealthy: Option<&str>) -> String {
    let mut reason = format!("generation {generation} was not confirmed after the reboot");
    if let Some(u) = unhealthy {
        reason.push_str(&format!(" (services unhealthy: {u})"));
    }
    match &state.recovered {
        Some(r) => reason.push_str(&format!("; the host reverted it: {r}")),
        None => reason.push_str(&format!("; the host came back on generation {:?}", state.current)),
    }
    reason
}
