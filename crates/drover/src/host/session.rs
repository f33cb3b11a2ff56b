//! One host's session: connect → hello → what it should become → diff →
//! ship → activate → confirm (→ reboot), retried as a whole on transient
//! failures, the result a [`HostReport`].
//!
//! Per host, the no-op path is two small messages: the manifest hash the
//! controller compiled, and the agent's "up to date". Only when that fails is
//! the manifest sent, and then only missing blobs travel, pipelined without a
//! round trip per file.

use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, Request, Response};
use drover_spec::Host;

use super::backoff::backoff;
use super::confirm::confirm;
use super::desired::{compile, desired_state, Desired};
use super::error::HostError;
use super::job::{Job, Mode};
use super::report::{parse_restart, HostReport, Outcome};
use super::ship::{ChunkCache, Shipper};
use crate::phases::ms;
use crate::progress::HostProgress;
use crate::transport::link::LinkError;
use crate::transport::TransportError;

pub async fn run_host(job: &Job, chunks: &ChunkCache, host: &Host, p: &HostProgress) -> HostReport {
    let start = Instant::now();
    let mut r = HostReport::new(&host.name);
    r.started_ms = Some(drover_state::now_ms());
    let mut attempt = 0;
    loop {
        attempt += 1;
        r.attempts = attempt;
        match run_once(job, chunks, host, &mut r, p).await {
            Ok(()) => break,
            Err(e) if e.is_transient() && attempt <= job.retries => {
                p.step(format!("retrying after: {e}"));
                r.retried.push(format!("attempt {attempt}: {e}"));
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                let unreachable = matches!(&e, HostError::Transport(TransportError::Ssh(s)) if s.is_transient());
                r.outcome = if unreachable { Outcome::Unreachable } else { Outcome::Failed };
                if let HostError::Link(LinkError::Storage(f)) = &e {
                    r.storage = Some((**f).clone());
                }
                r.error = Some(e.to_string());
                break;
            }
        }
    }
    r.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    r
}

async fn run_once(
    job: &Job,
    chunks: &ChunkCache,
    host: &Host,
    r: &mut HostReport,
    p: &HostProgress,
) -> Result<(), HostError> {
    p.step("connecting");
    let mut conn = match job.mode {
        Mode::Plan(_) => job.transport.connect_read_only(host, job.timeouts).await?,
        _ => job.transport.connect(host, job.timeouts).await?,
    };
    r.phases.connect_ms += ms(conn.connect_time);
    r.phases.hello_ms += ms(conn.hello_time);
    r.via = Some(conn.via);
    let clock = Instant::now();
    if !job.project.facts_known(host, &conn.facts) {
        tokio::task::block_in_place(|| job.project.remember_facts(host, &conn.facts));
    }
    r.recovered = conn.state.recovered.clone();
    r.revert_errors = conn.state.revert_errors.clone();
    r.generation = conn.state.current;
    // 0 on the wire: magic rollback off.
    let confirm_ms = job.confirm_timeout.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let outcome = match job.mode {
        Mode::Reboot => return super::reboot::reboot_only(job, host, conn, r, p).await,
        Mode::Rollback { to } => {
            p.step("rolling back");
            conn.link.set_timeout(apply_timeout(job));
            let clock = Instant::now();
            let req = Request::Rollback { to, confirm_timeout_ms: confirm_ms };
            let outcome = conn.link.call(&req, &mut |m| p.step(m)).await?;
            add_activation(r, clock, &outcome);
            outcome
        }
        Mode::Plan(_) | Mode::Apply => {
            let desired = desired_state(job, host, &mut conn, p).await;
            r.phases.diff_ms += ms(clock.elapsed());
            let compiled = match desired? {
                Desired::UpToDate => {
                    r.outcome = Outcome::Unchanged;
                    conn.close().await;
                    return Ok(());
                }
                // An earlier attempt activated exactly this; it only lacks the
                // confirmation (this is a new connection, so give it).
                Desired::AwaitingConfirm(generation) if matches!(job.mode, Mode::Apply) => {
                    let clock = Instant::now();
                    let reply = conn.link.call(&Request::Confirm { generation }, &mut |_| {}).await;
                    r.phases.confirm_ms += ms(clock.elapsed());
                    super::confirm::confirmed(reply?)?;
                    conn.close().await;
                    r.generation = Some(generation);
                    r.outcome = Outcome::Changed;
                    return Ok(());
                }
                Desired::AwaitingConfirm(_) => compile(job, host, &conn.facts, conn.state.next)?,
                // Another generation awaits its confirmation: the agent would
                // refuse to activate this one, so refuse before shipping.
                Desired::PendingOther { generation, until_ms } if matches!(job.mode, Mode::Apply) => {
                    conn.close().await;
                    return Err(HostError::PendingOther { generation, until_ms });
                }
                Desired::PendingOther { .. } => compile(job, host, &conn.facts, conn.state.next)?,
                Desired::Change(c) => c,
            };
            let generation = conn.state.next;
            p.step("comparing");
            let clock = Instant::now();
            let req = job.project.diff_request(host, &compiled.manifest, generation);
            let diff = conn.link.call(&req, &mut |m| p.step(m)).await;
            r.phases.diff_ms += ms(clock.elapsed());
            let (changes, restarts, missing, setup, bases) = match diff? {
                Response::Diff { changes, restarts, missing, setup, bases } => {
                    (changes, restarts, missing, setup, bases)
                }
                other => return Err(HostError::unexpected("Diff", &other)),
            };
            r.changes = changes;
            r.setup = setup;
            r.restarts = restarts;
            if let Mode::Plan(opts) = job.mode {
                if opts.diff {
                    r.diffs = Some(super::diff::host_diffs(&*job.project, &mut conn, &compiled, &r.changes, p).await?);
                }
                // Packages to install or accounts to create change no path.
                let nothing = r.changes.is_empty() && r.restarts.is_empty() && r.setup.is_empty();
                r.outcome = if nothing { Outcome::Unchanged } else { Outcome::Planned };
                conn.close().await;
                return Ok(());
            }
            let clock = Instant::now();
            let shipper = Shipper { source: &*job.project, chunks };
            let sent = shipper.send_all(host, &mut conn, &compiled, &missing, &bases, r, p).await;
            r.phases.send_ms += ms(clock.elapsed());
            sent?;
            p.step("applying");
            conn.link.set_timeout(apply_timeout(job));
            let clock = Instant::now();
            let req = Request::Apply { confirm_timeout_ms: confirm_ms, stop_first: job.stop_first };
            let outcome = conn.link.call(&req, &mut |m| p.step(m)).await?;
            add_activation(r, clock, &outcome);
            outcome
        }
    };
    if let Some(plan) = job.reboot.as_ref().filter(|plan| plan.applies(host)) {
        if let Response::Applied(ApplyOutcome::Activated { generation, restarted, files_written, .. }) = outcome {
            r.files_written = files_written;
            r.restarts = restarted.iter().map(|s| parse_restart(s)).collect();
            activated(job, r, generation);
            return super::reboot::after_activation(job, host, plan, conn, generation, r, p).await;
        }
    }
    conn.close().await;
    finish(job, host, outcome, r, p).await
}

/// Split the `Apply`/`Rollback` round trip that began at `clock` into the
/// activate, restart and health phases (see [`crate::phases`]).
fn add_activation(r: &mut HostReport, clock: Instant, outcome: &Response) {
    let times = match outcome {
        Response::Applied(ApplyOutcome::Activated { times, .. } | ApplyOutcome::RolledBack { times, .. }) => *times,
        _ => Default::default(),
    };
    r.phases.add_activation(clock.elapsed(), &times);
}

/// The host's agent reported `generation` live: say so to the run's record
/// now (a controller killed before the end leaves this trace).
fn activated(job: &Job, r: &mut HostReport, generation: u64) {
    r.generation = Some(generation);
    let outcome = std::mem::replace(&mut r.outcome, Outcome::Activated);
    let error = r.error.replace(format!("generation {generation} activated, not yet confirmed by this run"));
    job.activations.activated(r);
    (r.outcome, r.error) = (outcome, error);
}

fn apply_timeout(job: &Job) -> Duration {
    (job.timeouts.op * 10).max(Duration::from_secs(300))
}

async fn finish(
    job: &Job,
    host: &Host,
    outcome: Response,
    r: &mut HostReport,
    p: &HostProgress,
) -> Result<(), HostError> {
    match outcome {
        Response::Applied(ApplyOutcome::Activated { generation, restarted, files_written, .. }) => {
            r.files_written = files_written;
            r.restarts = restarted.iter().map(|s| parse_restart(s)).collect();
            activated(job, r, generation);
            if job.confirm_timeout.is_some() {
                p.step("confirming over a new connection");
                let clock = Instant::now();
                let confirmed = confirm(job, host, generation).await;
                r.phases.confirm_ms += ms(clock.elapsed());
                confirmed?;
            }
            r.outcome = Outcome::Changed;
        }
        Response::Applied(ApplyOutcome::UpToDate { generation }) => {
            r.generation = Some(generation);
            r.outcome = Outcome::Unchanged;
        }
        Response::Applied(ApplyOutcome::RolledBack { failed, to, reason, revert_errors, failure, .. }) => {
            r.generation = to;
            r.revert_errors.extend(revert_errors);
            r.outcome = Outcome::RolledBack;
            // The one-line reason again from the failure once its log lines
            // are redacted: the agent's own line quotes the last of them.
            let reason = match failure {
                Some(mut f) => {
                    tokio::task::block_in_place(|| job.project.redact(&mut f));
                    let line = f.to_string();
                    r.failure = Some(*f);
                    line
                }
                None => reason,
            };
            r.error = Some(format!("generation {failed} failed and was rolled back: {reason}"));
        }
        other => return Err(HostError::unexpected("Apply", &other)),
    }
    Ok(())
}
