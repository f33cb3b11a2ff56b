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
use crate::sys::FileLock;
use crate::{cgroup, net, preflight, sys};

/// How long a host may take to stop and to answer SSH again.
pub const REBOOT_TIMEOUT: Duration = Duration::from_secs(90);

impl Lab {
    /// Reboot host `name` from outside and wait until its sshd answers.
    /// Returns how long it took.
    pub fn reboot(&self, name: &str) -> Result<Duration, LabError> {
        preflight::check(preflight::NET)?;
        let started = Instant::now();
        let host = self.select(name)?;
        let [host] = host.as_slice() else {
            return Err(LabError::HostsNotReady {
                failures: vec![(name.into(), "name exactly one host to reboot".into())],
            });
        };
        let n = parse_host_name(&host.name).expect("state host names are valid");
        let naming = Naming { idx: self.state.index };
        let cgroups = match self.state.init {
            Init::Runit => None,
            Init::Systemd => Some(cgroup::detect()?),
        };
        let run = HostRun { lab: self.name(), cgroups, paths: &self.paths, naming };
        let _lock = FileLock::acquire(&self.paths.lock_file())?;
        let deadline = started + REBOOT_TIMEOUT;
        stop(&run, n, deadline).map_err(|why| LabError::HostsNotReady { failures: vec![(host.name.clone(), why)] })?;
        // The namespace and its link outlive the processes; recreated if
        // something removed them meanwhile.
        net::ensure_host_link(naming, n, false)?;
        run.start_if_stopped(n)?;
        run.wait_ready(n, deadline)
            .map_err(|why| LabError::HostsNotReady { failures: vec![(host.name.clone(), why)] })?;
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
