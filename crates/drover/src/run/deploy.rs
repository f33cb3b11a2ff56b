//! `plan`, `apply` and `rollback` (with `--bundle`, `--relay` or
//! `--workers`): from what was asked to a recorded run. Chooses the
//! delivery strategy and the hosts, builds the [`RunSpec`], runs it here or
//! hands it to workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_spec::Host;

use super::bundle::{RelayOptions, SignedBundle};
use super::workers::{SimSpec, WorkSpec, WorkersError};
use super::{Overrides, Ran, RunReport, RunSpec, Settings};
use crate::host::{Mode, RebootPlan, StateSource};
use crate::select::select;
use crate::transport::sim::SimArgs;
use crate::transport::Transport;

/// What a deploy command asks for, its flags parsed.
#[derive(Debug, Clone)]
pub struct Request {
    pub mode: Mode,
    /// Host, group or role names, comma-separated (`None`: every host).
    pub hosts: Option<String>,
    /// Simulated hosts under this directory instead of SSH, their links
    /// shaped by `sim`.
    pub simulate: Option<PathBuf>,
    pub sim: Option<SimArgs>,
    pub overrides: Overrides,
    /// `--reboot`: every host reboots after activation (else the project's
    /// rollout policies say which, if any).
    pub reboot: bool,
    pub reboot_timeout: Duration,
    /// Hand the hosts to N local workers (and any on the same store).
    pub workers: Option<usize>,
    pub bundle: Option<SignedBundle>,
    pub relay: Option<RelayOptions>,
    /// Live progress on stderr.
    pub show: bool,
    /// Apply or roll back hosts a paused or orphaned rollout holds.
    pub force: bool,
}

/// The run `req` asks for, recorded; its report for the caller to print.
pub fn run(dir: &Path, req: &Request) -> anyhow::Result<Ran> {
    let delivered = req.bundle.is_some() || req.relay.is_some();
    if req.workers.is_some() {
        if !matches!(req.mode, Mode::Apply) {
            return Err(WorkersError::Unsupported("a command other than apply").into());
        }
        if delivered {
            return Err(WorkersError::Unsupported("--bundle").into());
        }
        super::workers::require_shared_store(dir)?;
    }
    let t = if delivered { from_bundle(dir, req)? } else { from_project(dir, req)? };
    let mut hosts = t.hosts;
    super::skip_drained(dir, &mut hosts, req.mode)?;
    if matches!(req.mode, Mode::Apply | Mode::Rollback { .. }) && !req.force {
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        super::rollout::hold::refuse_held(&crate::store::open(dir)?, &names)?;
    }
    crate::host::reboot::refuse_simulated(t.reboot.as_ref(), req.simulate.as_deref())?;
    let spec = RunSpec::new(t.source, t.transport, req.mode, t.settings, &req.overrides).reboot(t.reboot);
    if let Some(n) = req.workers {
        if spec.job.reboot.is_some() {
            return Err(WorkersError::Unsupported("rebooting (--reboot or a policy's reboot)").into());
        }
        return by_workers(dir, req, &spec, &hosts, n);
    }
    super::execute(dir, req.mode.verb(), spec, hosts, req.show)
}

/// Where a run's desired state comes from, for which hosts, with which
/// settings, over which transport.
struct Target {
    source: Arc<dyn StateSource>,
    hosts: Vec<Host>,
    settings: Settings,
    reboot: Option<RebootPlan>,
    transport: Transport,
}

/// The project compiled here: every selected host compiled once first (a
/// template error stops the run before any host is touched).
fn from_project(dir: &Path, req: &Request) -> anyhow::Result<Target> {
    let project = crate::store::load_project(dir)?;
    let hosts = select(&project.hosts, req.hosts.as_deref())?;
    if !matches!(req.mode, Mode::Rollback { .. }) {
        super::spec::preflight(&project, &hosts)?;
    }
    let reboot = match req.mode {
        Mode::Plan(_) => None,
        _ if req.reboot => Some(RebootPlan::every_host(req.reboot_timeout)),
        _ => RebootPlan::from_project(&project, req.reboot_timeout),
    };
    let transport = Transport::for_hosts(req.simulate.as_deref(), req.sim.as_ref())?.persistent(&project);
    let settings = Settings::from(&project.settings);
    Ok(Target { source: Arc::new(project), hosts, settings, reboot, transport })
}

/// `--bundle` or `--relay`: the desired state from a bundle, or shipped
/// through peer relays (see [`super::bundle`]).
fn from_bundle(dir: &Path, req: &Request) -> anyhow::Result<Target> {
    if matches!(req.mode, Mode::Rollback { .. }) {
        anyhow::bail!("rollback takes no --bundle or --relay (generations are kept on the hosts)");
    }
    if req.relay.is_some() && req.simulate.is_some() {
        anyhow::bail!("--relay needs real hosts (relay servers listen on each host's address)");
    }
    let d = super::bundle::delivery(dir, req.bundle.as_ref(), req.relay)?;
    let hosts = select(&d.hosts, req.hosts.as_deref())?;
    let reboot = match req.mode {
        Mode::Plan(_) => None,
        _ => req.reboot.then(|| RebootPlan::every_host(req.reboot_timeout)),
    };
    let transport = Transport::for_hosts(req.simulate.as_deref(), None)?;
    Ok(Target { source: d.source, hosts, settings: d.settings, reboot, transport })
}

/// `apply --workers N` (see [`super::workers`]): the same report, assembled
/// from what the workers recorded.
fn by_workers(dir: &Path, req: &Request, spec: &RunSpec, hosts: &[Host], n: usize) -> anyhow::Result<Ran> {
    let sim = req.sim.as_ref().map_or_else(SimSpec::unshaped, SimSpec::from);
    let work = WorkSpec::of_run(dir, spec, req.simulate.as_deref(), sim)?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let start = Instant::now();
    let reports = super::workers::apply(dir, &work, &names, n, !req.show)?;
    let report = RunReport {
        command: "apply".into(),
        phases: crate::phases::Phases::sum(reports.iter().map(|h| &h.phases)),
        hosts: reports,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
        instances: vec![],
    };
    Ok(Ran { report, lost: None })
}
