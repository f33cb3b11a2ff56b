//! Magic rollback across a reboot.
//!
//! A change that matters most on a remote machine (kernel, network, firewall,
//! sshd) often takes effect only at the next boot, which is exactly when a
//! machine is lost. So a generation activated with `--reboot` stays
//! unconfirmed through the reboot:
//!
//! 1. `Reboot` (from the controller, after `Apply`): the boot-time hook is
//!    installed ([`install_hook`]), the pending generation is marked
//!    ([`RebootMark`]) with a deadline that covers the shutdown and the
//!    boot, and the host reboots through its [`HostEnv`].
//! 2. At boot, before anything drover manages starts, the hook runs
//!    `drover-agent boot` ([`at_boot`]): it counts the boot, gives the
//!    controller a fresh `confirm_ms` from now, and starts the watchdog.
//! 3. Unconfirmed at the deadline, the watchdog reverts to the previous
//!    generation and reboots once more into it ([`reboot_after_revert`]);
//!    `reboot-guard.json` records that it did and why, and it never does so
//!    twice for one generation (no boot loop).
//!
//! A second boot into a marked generation before it was confirmed (the
//! generation itself made the host reboot) does not renew the deadline: the
//! watchdog reverts at once.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::state::{now_ms, read_json, write_json, Pending, Phase};
use crate::{bail, Context, Result};

mod hook;
pub use hook::{install_hook, RUNIT_HOOK_PATH, SYSTEMD_UNIT_PATH};

/// How the agent reboots the host it runs on. Chosen once, at the agent's
/// entry (the command line), never guessed from the target root: an agent
/// serving a simulated host inside the controller's process, or as a local
/// process of the controller machine, must not be able to reboot that
/// machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEnv {
    /// A real host: reboot through its init.
    System,
    /// A simulated host (a directory on the controller machine): refuses.
    Simulated,
}

impl HostEnv {
    /// The agent's command-line flag for this environment, for re-execs.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            HostEnv::System => None,
            HostEnv::Simulated => Some(SIMULATED_FLAG),
        }
    }

    /// Reboot now. systemd reboots in order (`systemctl reboot`); runit as
    /// pid 1 through `runit-init 6`; anything else (a lab host, whose pid 1
    /// is `runsvdir` in its own pid namespace) with `reboot(2)` after a
    /// `sync`. In a pid namespace other than the first, `reboot(2)` ends that
    /// namespace's init only, which is what a lab host's reboot is.
    pub fn reboot(self) -> Result<()> {
        match self {
            HostEnv::Simulated => bail!("this host is simulated (a directory on the controller): it cannot reboot"),
            HostEnv::System => {
                if Path::new("/run/systemd/system").is_dir() {
                    return run(Command::new("systemctl").arg("reboot"));
                }
                let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
                if init.trim() == "runit" && Path::new("/sbin/runit-init").exists() {
                    return run(Command::new("/sbin/runit-init").arg("6"));
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

/// On a pending generation: it is to be confirmed after a reboot.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RebootMark {
    /// Given to the controller at boot, from the moment the hook runs.
    pub confirm_ms: u64,
    /// Boots into this generation so far (0: not yet rebooted).
    pub boots: u32,
}

/// Boots the hook has seen: the controller compares the count before and
/// after a reboot to know the host really went through one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootRecord {
    pub boots: u64,
    pub last_ms: u64,
}

/// Why the watchdog rebooted a host after a revert (at most once per
/// generation: the boot-loop guard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebootGuard {
    pub generation: u64,
    pub reason: String,
    pub at_ms: u64,
}

pub fn boots(layout: &Layout) -> u64 {
    read_json::<BootRecord>(&layout.boot_record()).ok().flatten().map_or(0, |b| b.boots)
}

/// Handle `Reboot`: install the hook, mark the pending generation (if any)
/// so that it survives the reboot, and return the boot count now. The
/// caller replies, then calls [`HostEnv::reboot`].
pub fn prepare(layout: &Layout, env: HostEnv, confirm_ms: u64, boot_timeout_ms: u64, sha256: &str) -> Result<u64> {
    if env == HostEnv::Simulated {
        // Refused before anything is written.
        env.reboot()?;
    }
    install_hook(layout, env, sha256)?;
    if let Some(mut p) = read_json::<Pending>(&layout.pending())? {
        if p.phase != Phase::AwaitingConfirm {
            bail!("generation {} is still activating; reboot once it is healthy", p.generation);
        }
        // Long enough for shutdown and boot; the hook renews it at boot.
        p.deadline_ms = now_ms() + boot_timeout_ms + confirm_ms;
        p.reboot = Some(RebootMark { confirm_ms, boots: 0 });
        write_json(&layout.pending(), &p)?;
    }
    Ok(boots(layout))
}

/// `drover-agent boot`, run by the boot-time hook before the services drover
/// manages start. Quick and blocking nothing: it only rewrites
/// `pending.json` and starts the watchdog, which does any revert (driving
/// the supervisor from inside an early boot unit could wait on the boot
/// itself).
pub fn at_boot(layout: &Layout, env: HostEnv) -> Result<String> {
    let rec = BootRecord { boots: boots(layout) + 1, last_ms: now_ms() };
    write_json(&layout.boot_record(), &rec)?;
    let Some(mut p) = read_json::<Pending>(&layout.pending())? else {
        return Ok(format!("boot {}: nothing pending", rec.boots));
    };
    let what = match (p.phase, p.reboot.as_mut()) {
        (Phase::AwaitingConfirm, Some(mark)) if mark.boots == 0 => {
            mark.boots = 1;
            p.deadline_ms = now_ms() + mark.confirm_ms;
            format!("generation {} awaits confirmation for {} ms", p.generation, mark.confirm_ms)
        }
        (Phase::AwaitingConfirm, Some(mark)) => {
            mark.boots += 1;
            p.deadline_ms = now_ms();
            format!("generation {} booted again before it was confirmed: reverting", p.generation)
        }
        (Phase::AwaitingConfirm, None) => format!("generation {} awaits confirmation (deadline kept)", p.generation),
        (Phase::Starting, _) => format!("generation {} never finished activating: reverting", p.generation),
    };
    write_json(&layout.pending(), &p)?;
    crate::watchdog::spawn(layout, env)?;
    Ok(what)
}

/// After the watchdog reverted a generation that was to be confirmed after
/// a reboot: should it reboot once more, into the generation now current?
/// Records the decision first (the boot-loop guard), and returns what to
/// say in the watchdog's report.
pub fn reboot_after_revert(layout: &Layout, reverted: &Pending) -> Result<(String, bool)> {
    let guard = read_json::<RebootGuard>(&layout.reboot_guard())?;
    if guard.is_some_and(|g| g.generation == reverted.generation) {
        let note =
            format!("not rebooting again: already rebooted once after reverting generation {}", reverted.generation);
        return Ok((note, false));
    }
    let reason = format!(
        "generation {} was not confirmed after the reboot; rebooting once into the generation it reverted to",
        reverted.generation
    );
    write_json(
        &layout.reboot_guard(),
        &RebootGuard { generation: reverted.generation, reason: reason.clone(), at_ms: now_ms() },
    )?;
    Ok((reason, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A simulated host never reboots: `prepare` refuses before writing
    /// anything (no hook, no mark).
    #[test]
    fn simulated_host_refuses_to_reboot_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run/systemd/system")).unwrap();
        let layout = Layout::new(d.path());
        let e = prepare(&layout, HostEnv::Simulated, 1000, 1000, SHA).unwrap_err();
        assert!(e.0.contains("simulated"), "{e}");
        assert!(!layout.target(SYSTEMD_UNIT_PATH).exists());
        assert_eq!(HostEnv::Simulated.flag(), Some(SIMULATED_FLAG));
        assert_eq!(HostEnv::System.flag(), None);
    }

    /// The boot-loop guard: the first revert of a generation reboots, any
    /// later one for the same generation does not, and says why.
    #[test]
    fn reboot_after_revert_happens_once_per_generation() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        let p = Pending {
            generation: 7,
            deadline_ms: 0,
            seq: 3,
            phase: Phase::AwaitingConfirm,
            reboot: Some(RebootMark { confirm_ms: 1, boots: 1 }),
        };
        let (why, reboot) = reboot_after_revert(&layout, &p).unwrap();
        assert!(reboot && why.contains("generation 7 was not confirmed"), "{why}");
        let guard: RebootGuard = read_json(&layout.reboot_guard()).unwrap().unwrap();
        assert_eq!(guard.generation, 7);
        let (why, reboot) = reboot_after_revert(&layout, &p).unwrap();
        assert!(!reboot && why.contains("already rebooted once"), "{why}");
        let other = Pending { generation: 8, ..p };
        assert!(reboot_after_revert(&layout, &other).unwrap().1, "a later generation has its own one reboot");
    }
}
