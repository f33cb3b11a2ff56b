//! Whether a rollout whose controller died may be continued by another: only
//! with the project it started with (or when forced).

use crate::revision::Revision;

/// Why a rollout whose controller died is not continued by this process.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "rollout {id} started at project revision {started}, but the project is now at {now}: its finished batches got the first, the rest would get the second. Put the project back at {started} and resume, `drover rollout abort` it and start a new rollout, or `drover rollout resume --force` to continue with the project as it is now"
    )]
    ProjectChanged { id: i64, started: String, now: String },
    #[error(
        "rollout {id} recorded no project revision (it was started by an older drover), so it cannot be shown to continue with the same project (now at {now}); `drover rollout resume --force` to continue anyway, or `drover rollout abort` it"
    )]
    UnknownRevision { id: i64, now: String },
}

/// May rollout `id`, started at `started`, be continued with the project as
/// it is `now`? Only when it compiles from the same inputs (see
/// [`crate::revision`]), or with `force`.
pub fn check_resume(id: i64, started: Option<&str>, now: &Revision, force: bool) -> Result<(), ResumeError> {
    if force {
        return Ok(());
    }
    match started.map(Revision::parse) {
        Some(s) if s.same_inputs(now) => Ok(()),
        Some(s) => Err(ResumeError::ProjectChanged { id, started: s.to_string(), now: now.to_string() }),
        None => Err(ResumeError::UnknownRevision { id, now: now.to_string() }),
    }
}
