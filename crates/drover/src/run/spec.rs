//! A run's settings, resolved once: drover.toml's (or a bundle's copy of
//! them), then what flags or `drover serve` override, then the defaults for
//! the rest. Every kind of run (apply, rollback, plan, rollout batches,
//! reboots, workers, serve's healing) builds its [`RunSpec`] here, so a
//! default lives in one place.

use std::sync::Arc;
use std::time::Duration;

use drover_spec::{Host, Project, SpecError};

use crate::host::{Job, Mode, RebootPlan, StateSource};
use crate::transport::{Timeouts, Transport};

/// Longest silence tolerated from an agent during one step, unless a flag says otherwise.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Extra attempts per host after a transient failure, unless a flag says otherwise.
pub const RETRIES: u32 = 3;

/// What one run does to each host, and how many at once.
#[derive(Clone)]
pub struct RunSpec {
    /// Handed to every host's session.
    pub job: Job,
    /// Hosts handled at once.
    pub parallel: usize,
    /// The run's host-lock lease: once it is lost (its store went away),
    /// no more hosts are started; those already started finish.
    pub fence: drover_state::LeaseWatch,
}

/// The settings a run takes from the project (drover.toml) or a bundle.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `None`: magic rollback off (`confirm-timeout = "0s"`).
    pub confirm_timeout: Option<Duration>,
    pub parallel: usize,
    pub connect_timeout: Duration,
}

impl From<&drover_spec::Settings> for Settings {
    fn from(s: &drover_spec::Settings) -> Settings {
        Settings {
            confirm_timeout: Some(s.confirm_timeout).filter(|d| !d.is_zero()),
            parallel: s.parallel,
            connect_timeout: s.connect_timeout,
        }
    }
}

impl From<&drover_bundle::Settings> for Settings {
    fn from(s: &drover_bundle::Settings) -> Settings {
        Settings {
            confirm_timeout: Some(Duration::from_millis(s.confirm_timeout_ms)).filter(|d| !d.is_zero()),
            parallel: usize::try_from(s.parallel).unwrap_or(512),
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
        }
    }
}

/// What flags may override; `None` keeps the setting or default.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub parallel: Option<usize>,
    /// `Some(None)`: `--confirm-timeout 0s`, magic rollback off.
    pub confirm_timeout: Option<Option<Duration>>,
    pub retries: Option<u32>,
    pub op_timeout: Option<Duration>,
}

impl RunSpec {
    /// A run of `mode` on hosts reached by `transport`, their desired state
    /// from `source`.
    pub fn new(
        source: Arc<dyn StateSource>,
        transport: Transport,
        mode: Mode,
        settings: Settings,
        o: &Overrides,
    ) -> RunSpec {
        RunSpec {
            job: Job {
                project: source,
                transport,
                mode,
                timeouts: Timeouts { connect: settings.connect_timeout, op: o.op_timeout.unwrap_or(OP_TIMEOUT) },
                confirm_timeout: o.confirm_timeout.unwrap_or(settings.confirm_timeout),
                retries: o.retries.unwrap_or(RETRIES),
                stop_first: false,
                reboot: None,
                activations: Default::default(),
            },
            parallel: o.parallel.unwrap_or(settings.parallel),
            fence: Default::default(),
        }
    }

    /// A run of a loaded project with its own settings.
    pub fn of_project(project: Arc<Project>, transport: Transport, mode: Mode, o: &Overrides) -> RunSpec {
        let settings = Settings::from(&project.settings);
        RunSpec::new(project, transport, mode, settings, o)
    }

    /// Reboot after activation (these hosts, per the plan).
    pub fn reboot(mut self, plan: Option<RebootPlan>) -> RunSpec {
        self.job.reboot = plan;
        self
    }

    /// The same settings for another goal (rollouts apply, then may revert).
    pub fn clone_for(&self, mode: Mode) -> RunSpec {
        RunSpec { job: self.job.clone_for(mode), ..self.clone() }
    }
}

/// Compile every host once with placeholder facts before touching any: a
/// template error must stop the run with nothing applied anywhere. The
/// placeholder has the host's architecture when it reported one: an image
/// service whose image lacks it stops the run here too.
#[allow(clippy::result_large_err)] // see drover-spec: SpecError carries its source text
pub fn preflight(project: &Project, hosts: &[Host]) -> Result<(), SpecError> {
    let facts = drover_proto::Facts { supervisor: Some(drover_proto::Supervisor::Runit), ..Default::default() };
    for h in hosts {
        let arch = project.cached_facts(&h.name).map(|f| f.arch.clone()).unwrap_or_default();
        project.compile(h, &drover_proto::Facts { arch, ..facts.clone() }, 1)?;
    }
    Ok(())
}
