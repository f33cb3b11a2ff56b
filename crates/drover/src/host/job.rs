//! What to do to each host of a run, and with which settings: the part of a
//! run that one host's session needs (the scheduler's part, parallelism and
//! the lease fence, is `crate::run::RunSpec`).

use std::sync::Arc;
use std::time::Duration;

use drover_spec::{Host, Project};

use super::report::HostReport;
use super::source::StateSource;
use crate::transport::{Timeouts, Transport};

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Read-only: the agent takes no lock, runs no recovery, writes nothing.
    Plan(super::diff::PlanOptions),
    Apply,
    Rollback {
        to: Option<u64>,
    },
    /// Reboot, wait for the host to come back healthy (`drover reboot`).
    Reboot,
}

#[derive(Clone)]
pub struct Job {
    pub project: Arc<dyn StateSource>,
    pub transport: Transport,
    pub mode: Mode,
    pub timeouts: Timeouts,
    /// How long the agent waits for the confirmation over a fresh
    /// connection before it reverts by itself; `None`: magic rollback off.
    pub confirm_timeout: Option<Duration>,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// Stop restarting services before the swap (rollout order).
    pub stop_first: bool,
    /// Reboot (these) hosts after activation; confirm after the reboot.
    pub reboot: Option<RebootPlan>,
    /// Told the moment a host's agent reports a new generation live, so
    /// the run's record has it even if the controller dies before the end.
    pub activations: Activations,
}

/// Where a host's activation is reported as it happens (the run's record:
/// `crate::run::record`); by default nowhere.
#[derive(Clone, Default)]
pub struct Activations(Option<Arc<OnActivated>>);

/// What is told of one activation.
type OnActivated = dyn Fn(&HostReport) + Send + Sync;

impl Activations {
    pub fn new(f: impl Fn(&HostReport) + Send + Sync + 'static) -> Activations {
        Activations(Some(Arc::new(f)))
    }

    /// `r` (its outcome [`Outcome::Activated`], its generation the new one)
    /// is live on its host, not yet confirmed.
    pub fn activated(&self, r: &HostReport) {
        if let Some(f) = &self.0 {
            f(r)
        }
    }
}

impl Mode {
    /// The command that runs this mode, as runs are recorded.
    pub fn verb(self) -> &'static str {
        match self {
            Mode::Plan(_) => "plan",
            Mode::Apply => "apply",
            Mode::Rollback { .. } => "rollback",
            Mode::Reboot => "reboot",
        }
    }
}

impl Job {
    /// The same settings for another goal (rollouts apply, then may revert).
    pub fn clone_for(&self, mode: Mode) -> Job {
        Job { mode, ..self.clone() }
    }
}

/// Which hosts reboot after activation, and how long one may take to come
/// back.
#[derive(Debug, Clone)]
pub struct RebootPlan {
    /// From sending `Reboot` until the host answers SSH from its next boot.
    pub timeout: Duration,
    /// `None`: every host; otherwise hosts with one of these roles.
    pub roles: Option<Vec<String>>,
}

impl RebootPlan {
    pub fn every_host(timeout: Duration) -> RebootPlan {
        RebootPlan { timeout, roles: None }
    }

    /// From the project: every host when the project's rollout policy says
    /// `reboot = true`, else the hosts of roles whose own policy does;
    /// `None` when no policy asks for reboots.
    pub fn from_project(project: &Project, timeout: Duration) -> Option<RebootPlan> {
        if project.rollout_policy(None).reboot {
            return Some(RebootPlan::every_host(timeout));
        }
        let roles = project.reboot_roles();
        (!roles.is_empty()).then_some(RebootPlan { timeout, roles: Some(roles) })
    }

    pub fn applies(&self, host: &Host) -> bool {
        self.roles.as_ref().is_none_or(|roles| host.roles.iter().any(|r| roles.contains(r)))
    }
}
