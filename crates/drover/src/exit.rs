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

/// Why a command ended in an error, as far as exit codes tell it. Decided
/// from the error's type in one place ([`From`] below), as firecracker's
/// `FcExitCode` is: no call site picks a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Before any host was touched: a bad project, bad arguments (1).
    Usage,
    /// Cut short after hosts were touched: the state store was lost (2).
    Cut,
    /// Refused: a lock held, an unfinished rollout, the machine lacks
    /// something ([`crate::run::Refusal`]) (3).
    Refused,
}

impl From<&anyhow::Error> for Failure {
    fn from(err: &anyhow::Error) -> Failure {
        if err.downcast_ref::<crate::run::Refusal>().is_some() {
            Failure::Refused
        } else if err.downcast_ref::<crate::run::StoreLost>().is_some() {
            Failure::Cut
        } else {
            Failure::Usage
        }
    }
}

impl From<Failure> for ExitCode {
    fn from(f: Failure) -> ExitCode {
        ExitCode::from(match f {
            Failure::Usage => 1,
            Failure::Cut => 2,
            Failure::Refused => 3,
        })
    }
}

/// Print an error with its whole cause chain (miette's diagnostic when the
/// error carries one: file, line, help) and exit with its [`Failure`].
pub fn report(err: anyhow::Error) -> ExitCode {
    let err = match err.downcast::<drover_spec::SpecError>() {
        Ok(diag) => {
            eprintln!("{:?}", miette::Report::new(diag));
            return Failure::Usage.into();
        }
        Err(err) => err,
    };
    eprintln!("error: {err:#}");
    Failure::from(&err).into()
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

    #[test]
    fn a_refusal_is_3_a_lost_store_2_anything_else_1() {
        let refused = anyhow::Error::from(crate::run::Refusal::Lab("not root".into()));
        let lost = anyhow::Error::from(crate::run::StoreLost {
            who: "run 1".into(),
            reason: "gone".into(),
            in_flight: String::new(),
        });
        let other = anyhow::anyhow!("bad flag").context("parsing");
        assert_eq!(Failure::from(&refused), Failure::Refused);
        assert_eq!(Failure::from(&lost.context("while recording")), Failure::Cut);
        assert_eq!(Failure::from(&other), Failure::Usage);
        let code = |f: Failure| format!("{:?}", ExitCode::from(f));
        assert_eq!(code(Failure::Refused), format!("{:?}", ExitCode::from(3)));
    }
}
