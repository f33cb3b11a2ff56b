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
//!    generation and reboots once more into it
//!    ([`watchdog::reboot_after_revert`]);
//!    `reboot-guard.json` records that it did and why, and it never does so
//!    twice for one generation (no boot loop).
//!
//! A second boot into a marked generation before it was confirmed (the
//! generation itself made the host reboot) does not renew the deadline: the
//! watchdog reverts at once.

use crate::engine::watchdog;
use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::state::{boots, now_ms, read_json, write_json, BootRecord, Pending, Phase, RebootMark};
use crate::{bail, Result};

mod hook;
pub use hook::{install_hook, OPENRC_SCRIPT_PATH, RUNIT_HOOK_PATH, SYSTEMD_UNIT_PATH};

/// Handle `Reboot`: install the hook, mark the pending generation (if any)
/// so that it survives the reboot, and return the boot count now. The
/// caller replies, then calls [`HostEnv::reboot`].
pub fn prepare(layout: &Layout, env: HostEnv, confirm_ms: u64, boot_timeout_ms: u64, sha256: &str) -> Result<u64> {
    if env.is_simulated() {
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
    watchdog::spawn(layout, env)?;
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostenv::SIMULATED_FLAG;

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
}
