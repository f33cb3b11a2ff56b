//! The host environment the agent serves: a real host, or a simulated one
//! (a directory on the controller machine). Chosen once, where the agent is
//! started, and passed down to everything that touches the machine itself:
//! rebooting, the service supervisor ([`crate::supervisor`]), the journal,
//! and how the magic-rollback watchdog is started.
//!
//! A leaf: it imports nothing of the agent but its error type.

use std::path::Path;
use std::process::Command;

use crate::{bail, Context, Result};

/// How the agent reboots the host it runs on (and whether it may), and how
/// it starts copies of itself. Chosen once, at the agent's entry (the
/// command line, or the controller's simulator), never guessed from the
/// target root: an agent serving a simulated host inside the controller's
/// process, or as a local process of the controller machine, must not be
/// able to reboot that machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEnv {
    /// A real host: reboot through its init.
    System,
    /// A simulated host (a directory on the controller machine), served by
    /// an agent process of its own: refuses to reboot.
    Simulated,
    /// A simulated host served by a thread of another process (the
    /// controller's simulated transport, `drover::sim`): as
    /// [`HostEnv::Simulated`], and since the current executable is then not
    /// an agent, the watchdog runs as a thread of this process instead of a
    /// copy of the agent.
    InProcess,
}

impl HostEnv {
    /// A directory on the controller machine rather than a real host.
    pub fn is_simulated(self) -> bool {
        matches!(self, HostEnv::Simulated | HostEnv::InProcess)
    }

    /// The agent's command-line flag for this environment, for re-execs.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            HostEnv::System => None,
            HostEnv::Simulated | HostEnv::InProcess => Some(SIMULATED_FLAG),
        }
    }

    /// Reboot now. systemd reboots in order (`systemctl reboot`); runit as
    /// pid 1 through `runit-init 6`; OpenRC's own `openrc-init` as pid 1
    /// through `openrc-shutdown --reboot now` (it stops the services, then
    /// calls `reboot(2)`); anything else (a lab host, whose pid 1
    /// is `runsvdir` in its own pid namespace) with `reboot(2)` after a
    /// `sync`. In a pid namespace other than the first, `reboot(2)` ends that
    /// namespace's init only, which is what a lab host's reboot is.
    pub fn reboot(self) -> Result<()> {
        match self {
            HostEnv::Simulated | HostEnv::InProcess => {
                bail!("this host is simulated (a directory on the controller): it cannot reboot")
            }
            HostEnv::System => {
                if Path::new("/run/systemd/system").is_dir() {
                    return run(Command::new("systemctl").arg("reboot"));
                }
                let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
                if init.trim() == "runit" && Path::new("/sbin/runit-init").exists() {
                    return run(Command::new("/sbin/runit-init").arg("6"));
                }
                if init.trim() == "openrc-init" {
                    return run(Command::new("openrc-shutdown").args(["--reboot", "now"]));
                }
                // SAFETY: sync and reboot take no pointers; reboot only
                // returns on failure.
                let rc = unsafe {
                    libc::sync();
                    libc::reboot(libc::LINUX_REBOOT_CMD_RESTART)
                };
                bail!("reboot(2) failed ({rc}): {}", std::io::Error::last_os_error())
            }
        }
    }
}

/// `drover-agent serve --simulated`: see [`HostEnv::Simulated`].
pub const SIMULATED_FLAG: &str = "--simulated";

fn run(cmd: &mut Command) -> Result<()> {
    let what = format!("{cmd:?}");
    let out = cmd.output().ctx(|| what.clone())?;
    if !out.status.success() {
        bail!("{what}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
