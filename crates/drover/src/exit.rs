//! The only place exit codes are decided.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: every selected host converged |
//! | 1 | an error before any host was touched (bad project, bad arguments) |
//! | 2 | some hosts failed or were unreachable; others may have converged |
//! | 3 | refused: a lock is held, or the environment lacks something (root, tools) |

use std::process::ExitCode;

/// Outcome of a command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done.
    Success,
    /// At least one host failed; the run summary says which and why.
    HostsFailed,
}

impl ExitStatus {
    /// A run over hosts: any host that did not converge (failed, rolled
    /// back, unreachable, or whose task died) fails the run.
    pub fn of_run(report: &crate::report::RunReport) -> ExitStatus {
        if report.failed() > 0 {
            ExitStatus::HostsFailed
        } else {
            ExitStatus::Success
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::HostsFailed => 2,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}

/// An error that stops a command before it did its job is a user error (1),
/// unless it says it is a refusal (3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Print an error with its whole cause chain (and miette diagnostics when the
/// error carries one) and pick the exit code.
pub fn report(err: anyhow::Error) -> ExitCode {
    let err = match err.downcast::<drover_spec::SpecError>() {
        Ok(diag) => {
            eprintln!("{:?}", miette::Report::new(diag));
            return ExitCode::from(1);
        }
        Err(err) => err,
    };
    eprintln!("error: {err:#}");
    if err.downcast_ref::<Refused>().is_some() {
        ExitCode::from(3)
    } else {
        ExitCode::from(1)
    }
}
