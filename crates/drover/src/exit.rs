//! The only place exit codes are decided.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: every selected host converged |
//! | 1 | an error before any host was touched (bad project, bad arguments) |
//! | 2 | some hosts failed or were unreachable, or the run was cut short after hosts were touched (its state store lost); others may have converged |
//! | 3 | refused: a lock is held, or the environment lacks something (root, tools) |
//!
//! `drover plan --exit-code` answers a different question, "is there anything
//! to do?", as `terraform plan -detailed-exitcode` does: 0 nothing to do, 2
//! changes pending, 1 an error (a bad project, or any host that could not be
//! planned). See [`plan_status`].

use std::process::ExitCode;

/// Outcome of a command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done.
    Success,
    /// At least one host failed; the run summary says which and why.
    HostsFailed,
    /// `plan --exit-code`: every host was planned, and some have changes.
    ChangesPending,
    /// `plan --exit-code`: some host could not be planned.
    PlanFailed,
}

/// The status of a finished run: success unless some host failed.
pub fn run_status(failed: usize) -> ExitStatus {
    if failed > 0 {
        ExitStatus::HostsFailed
    } else {
        ExitStatus::Success
    }
}

/// The status of `plan`: without `--exit-code` (`detailed`) as any run;
/// with it, 1 when any host failed or was unreachable, else 2 when any host
/// has changes pending, else 0.
pub fn plan_status(detailed: bool, failed: usize, planned: usize) -> ExitStatus {
    match (detailed, failed, planned) {
        (false, f, _) => run_status(f),
        (true, f, _) if f > 0 => ExitStatus::PlanFailed,
        (true, _, p) if p > 0 => ExitStatus::ChangesPending,
        (true, _, _) => ExitStatus::Success,
    }
}

impl ExitStatus {
    /// A run over hosts: any host that did not converge (failed, rolled
    /// back, unreachable, or whose task died) fails the run.
    pub fn of_run(report: &crate::run::RunReport) -> ExitStatus {
        if report.failed() > 0 {
            ExitStatus::HostsFailed
        } else {
            ExitStatus::Success
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::HostsFailed | ExitStatus::ChangesPending => 2,
            ExitStatus::PlanFailed => 1,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}

/// Print an error with its whole cause chain (and miette diagnostics when the
/// error carries one) and pick the exit code: 3 for a [`crate::run::Refusal`],
/// 2 for a run cut short by a lost store ([`crate::run::StoreLost`]), else 1.
pub fn report(err: anyhow::Error) -> ExitCode {
    let err = match err.downcast::<drover_spec::SpecError>() {
        Ok(diag) => {
            eprintln!("{:?}", miette::Report::new(diag));
            return ExitCode::from(1);
        }
        Err(err) => err,
    };
    eprintln!("error: {err:#}");
    if err.downcast_ref::<crate::run::Refusal>().is_some() {
        ExitCode::from(3)
    } else if err.downcast_ref::<crate::run::StoreLost>().is_some() {
        // Hosts may have changed before the run was cut short.
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_exit_codes_are_terraform_detailed_exitcode_with_the_flag_and_plain_without() {
        let code = |s: ExitStatus| format!("{:?}", ExitCode::from(s));
        assert_eq!(code(plan_status(true, 0, 0)), code(ExitStatus::Success));
        assert_eq!(code(plan_status(true, 0, 3)), format!("{:?}", ExitCode::from(2)));
        assert_eq!(code(plan_status(true, 1, 3)), format!("{:?}", ExitCode::from(1)));
        assert_eq!(plan_status(false, 0, 3), ExitStatus::Success);
        assert_eq!(plan_status(false, 1, 0), ExitStatus::HostsFailed);
    }
}
