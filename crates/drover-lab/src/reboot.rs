//! `drover lab reboot HOST`: a real reboot, as far as a lab host can have
//! one. Every process of the host is killed (its init, its services, the
//! shell that boots it), then its init starts again from its root as it is
//! on disk: what was written under `/run` or held in memory is gone, what
//! is in the overlay stays, services start as the init starts them.
//!
//! A host that reboots *itself* (`reboot`, `systemctl reboot`, or the
//! agent calling `reboot(2)`) needs none of this: its boot shell starts it
//! again (see `host::BOOT_LOOP`).

use std::time::{Duration, Instant};

use crate::config::{parse_host_name, Naming};
use crate::error::LabError;
use crate::host::HostRun;
use crate::init::Init;
use crate::lab::Lab;
use crate::state::LabState;
use crate::sys::FileLock;
use crate::{cgroup, net, preflight, sys};

/// How long a host may take to stop and to answer SSH again.
pub const REBOOT_TIMEOUT: Duration = Duration::from_secs(90);

impl Lab {
    /// Reboot the hosts named by `targets` (`all`, `h3`, `h1,h3`) from
    /// outside, one after the other, each until its sshd answers. Returns
    /// how long each took.
    pub fn reboot(&self, targets: &str) -> Result<Vec<(String, Duration)>, LabError> {
        preflight::check(preflight::NET)?;
        let names: Vec<String> = self.select(targets)?.into_iter().map(|h| h.name.clone()).collect();
        names.into_iter().map(|name| Ok((name.clone(), self.reboot_one(&name)?))).collect()
    }

    fn reboot_one(&self, name: &str) -> Result<Duration, LabError> {
        let started = Instant::now();
        let n = parse_host_name(name).expect("state host names are valid");
        let naming = Naming { idx: self.state.index };
        let record = self.state.hosts.iter().chain(&self.state.bastion).find(|h| h.n == n);
        let kind = record.map_or(crate::Kind::native(self.state.init), |h| self.state.kind_of(h));
        let cgroups = match kind.init {
            Init::Runit | Init::OpenRc => None,
            Init::Systemd => Some(cgroup::detect()?),
        };
        let run = HostRun { lab: self.name(), cgroups, containers: kind.containers, paths: &self.paths, naming };
        let _lock = FileLock::acquire(&self.paths.lock_file())?;
        let deadline = started + REBOOT_TIMEOUT;
        let failed = |why: String| LabError::HostsNotReady { failures: vec![(name.to_string(), why)] };
        stop(&run, n, deadline).map_err(failed)?;
        // The namespace and its link outlive the processes; recreated if
        // something removed them meanwhile.
        net::ensure_host_link(naming, n, false)?;
        run.start_if_stopped(n)?;
        // Its processes are new: a freeze is over. A cut link stays cut, and
        // a host behind one is not waited for (as `up` does).
        let state_file = self.paths.state_file();
        let mut state = LabState::load(&state_file)?.unwrap_or_else(|| self.state.clone());
        let fault = state.faults.get_mut(name);
        let down = fault.as_ref().is_some_and(|f| f.down);
        if let Some(f) = fault.filter(|f| f.frozen) {
            f.frozen = false;
            state.save(&state_file)?;
        }
        if !down {
            run.wait_ready(n, deadline).map_err(failed)?;
        }
        Ok(started.elapsed())
    }
}

/// SIGKILL the boot shell and every process of host `n` until none is left.
fn stop(run: &HostRun<'_>, n: u16, deadline: Instant) -> Result<(), String> {
    let ns = run.naming.netns(n);
    loop {
        // The boot shell first: it must not start the host again.
        let mut pids = run.boot_shells(n);
        pids.extend(sys::netns_pids(&ns));
        pids.extend(sys::pids_rooted_under(&run.paths.merged(n)));
        pids.retain(|p| sys::process_state(*p).is_some_and(|s| s != 'Z'));
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("processes {pids:?} did not stop"));
        }
        for p in pids {
            sys::signal(p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
