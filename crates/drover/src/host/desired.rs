//! What a host should become, and whether it already is.

use drover_proto::Facts;
use drover_proto::{Request, Response};
use drover_spec::{Compiled, Host};

use super::error::HostError;
use super::job::Job;
use super::source::StateSource;
use crate::progress::HostProgress;
use crate::transport::Connection;

pub(super) enum Desired {
    UpToDate,
    /// The host waits for the confirmation of exactly what this run would
    /// install (an earlier attempt's, or a killed run's): confirm it.
    AwaitingConfirm(u64),
    /// The host waits, until `until_ms`, for the confirmation of another
    /// generation than this run's: the agent refuses any activation till then.
    PendingOther {
        generation: u64,
        until_ms: u64,
    },
    Change(Compiled),
}

/// What the host should become, and whether it already is.
///
/// Templates may show `generation`. A file must not change just because
/// another file did (that would resend it and restart its services), so
/// `generation` means "the generation in which this file last changed": a
/// templated file whose generation-independent `source` hash is what the host
/// already has is kept exactly as the host has it.
pub(super) async fn desired_state(
    job: &Job,
    host: &Host,
    conn: &mut Connection,
    p: &HostProgress,
) -> Result<Desired, HostError> {
    let (desired, cur) = compare(&*job.project, host, conn, conn.state.next, p).await?;
    match (conn.state.pending_confirm, cur) {
        (Some(pending), Some(cur)) if pending == cur => return Ok(Desired::AwaitingConfirm(cur)),
        (Some(generation), _) => {
            let until_ms = conn.state.pending_deadline_ms.unwrap_or(0);
            return Ok(Desired::PendingOther { generation, until_ms });
        }
        (None, _) => {}
    }
    if cur.is_none() {
        return Ok(Desired::Change(desired));
    }
    let Some(cur_hash) = conn.state.current_manifest else { return Ok(Desired::Change(desired)) };
    p.step("checking");
    match conn.link.call(&Request::Check { manifest: cur_hash }, &mut |_| {}).await? {
        Response::Check { up_to_date: true, .. } => Ok(Desired::UpToDate),
        Response::Check { .. } => Ok(Desired::Change(desired)),
        other => Err(HostError::unexpected("Check", &other)),
    }
}

/// Whether the host's current generation is what `source` compiles for it
/// now: `false` means an apply would make a new generation (the host is
/// behind the project, after a rollback say, or a release it missed).
/// Drift (files edited on the host) is a separate question (`Status`).
pub async fn is_current(source: &dyn StateSource, host: &Host, conn: &mut Connection) -> Result<bool, HostError> {
    let (next, quiet) = (conn.state.next, crate::progress::Progress::new(0, false).host(&host.name));
    Ok(compare(source, host, conn, next, &quiet).await?.1.is_some())
}

/// What the host should become at `generation`, and its current generation
/// when that is already it.
async fn compare(
    source: &dyn StateSource,
    host: &Host,
    conn: &mut Connection,
    generation: u64,
    p: &HostProgress,
) -> Result<(Compiled, Option<u64>), HostError> {
    let next = source.compile(host, &conn.facts, generation).map_err(HostError::Compile)?;
    let (Some(cur), Some(cur_hash)) = (conn.state.current, conn.state.current_manifest) else {
        return Ok((next, None));
    };
    let uses_generation = next.manifest.entries.iter().any(|e| e.source.is_some());
    let desired = if next.manifest.hash() == cur_hash || !uses_generation {
        next
    } else {
        p.step("reading current manifest");
        match conn.link.call(&Request::CurrentManifest, &mut |_| {}).await? {
            Response::CurrentManifest(Some(current)) => keep_unchanged_sources(next, &current),
            _ => next,
        }
    };
    let same = desired.manifest.hash() == cur_hash;
    Ok((desired, same.then_some(cur)))
}

/// Templated entries whose source (and attributes) the host already has keep
/// the host's rendering; the host holds its blob.
fn keep_unchanged_sources(mut next: Compiled, current: &drover_proto::Manifest) -> Compiled {
    for e in &mut next.manifest.entries {
        let Some(c) = current.entry(&e.path) else { continue };
        if e.source.is_some() && c.source == e.source && c.mode == e.mode && c.owner == e.owner && c.group == e.group {
            *e = c.clone();
        }
    }
    next
}

pub(super) fn compile(job: &Job, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, HostError> {
    job.project.compile(host, facts, generation).map_err(HostError::Compile)
}
