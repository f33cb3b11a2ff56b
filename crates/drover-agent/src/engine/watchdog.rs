//! Magic rollback: a generation activated with a confirm timeout is reverted
//! unless the controller confirms it over a *new* SSH connection in time.
//!
//! The watchdog is a detached copy of the agent (own process group, stdio on
//! /dev/null) so that it survives the SSH session ending. If it is killed too
//! (a reboot), the next agent start finds the expired `pending.json` and
//! reverts then.
//!
//! Part of the engine: activating a generation (`activate.rs`) arms it, and at
//! the deadline it opens the engine, whose recovery does the revert. After
//! reverting a generation that was to be confirmed after a reboot (see
//! [`crate::boot`]), it reboots once more into the old one
//! ([`reboot_after_revert`], the boot-loop guard).

use std::process::Stdio;
use std::time::Duration;

use drover_proto::HostState;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::state::{now_ms, read_json, write_json, Pending, Phase};
use crate::{Context, Result};

/// Start the watchdog for the pending generation: a detached copy of the
/// agent, or, for an agent served inside another process
/// ([`HostEnv::InProcess`]: the current executable is then not an agent), a
/// thread of that process.
pub fn spawn(layout: &Layout, env: HostEnv) -> Result<()> {
    if env == HostEnv::InProcess {
        let layout = layout.clone();
        std::thread::Builder::new()
            .name("drover-watchdog".into())
            .spawn(move || {
                let _ = run(&layout, env);
            })
            .ctx(|| "start watchdog".into())?;
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    crate::reexec::command()
        .arg("watchdog")
        .arg("--root")
        .arg(layout.root())
        .args(env.flag())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ctx(|| "start watchdog".into())?;
    Ok(())
}

/// Wait for the deadline, then revert if still unconfirmed. A generation
/// still `starting` is one a boot found (the agent activating it is gone:
/// started at boot, see [`crate::boot::at_boot`]), or one another session
/// is activating now; either way recovery, under the lock, decides.
pub fn run(layout: &Layout, env: HostEnv) -> Result<()> {
    let last = loop {
        let Some(p) = read_json::<Pending>(&layout.pending())? else { return Ok(()) };
        let now = now_ms();
        if p.phase == Phase::Starting || now >= p.deadline_ms {
            break p;
        }
        std::thread::sleep(Duration::from_millis(p.deadline_ms.saturating_sub(now).min(200)));
    };
    // Opening the engine takes the lock and reverts an expired pending
    // generation as part of its recovery.
    let engine = Engine::open(layout.clone(), Duration::from_secs(3600), env)?;
    let current = engine.state.current;
    let Engine { recovered, revert_errors, .. } = engine;
    if let Some(mut recovered) = recovered {
        let mut report = Report { recovered: recovered.clone(), revert_errors };
        write_json(&layout.watchdog_report(), &report)?;
        // A generation that was to be confirmed after a reboot may have
        // changed what only a boot applies: boot again into the old one.
        // The report says so before the reboot: it may end this process.
        let reverted = last.reboot.is_some() && current != Some(last.generation);
        if reverted {
            let (note, reboot) = reboot_after_revert(layout, &last)?;
            recovered = format!("{recovered}; {note}");
            report.recovered = recovered.clone();
            write_json(&layout.watchdog_report(), &report)?;
            if reboot {
                if let Err(e) = env.reboot() {
                    report.recovered = format!("{recovered}; but the reboot failed: {e}");
                    write_json(&layout.watchdog_report(), &report)?;
                }
            }
        }
    }
    Ok(())
}

/// What the watchdog's revert did. No controller is connected when it runs,
/// so it is kept for the next one: reported at `Hello` like start-up
/// recovery (services it could not put back included), until a later
/// activation or rollback makes it history.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub recovered: String,
    pub revert_errors: Vec<String>,
}

/// Fold the last watchdog report into the state sent at `Hello`. Reads only.
pub fn add_report(layout: &Layout, state: &mut HostState) {
    if let Ok(Some(r)) = read_json::<Report>(&layout.watchdog_report()) {
        if state.recovered.is_none() {
            state.recovered = Some(format!("the watchdog: {}", r.recovered));
        }
        state.revert_errors.extend(r.revert_errors);
    }
}

/// The host changed generation since: the last watchdog report is history.
pub fn clear_report(layout: &Layout) {
    let _ = std::fs::remove_file(layout.watchdog_report());
}

/// Why the watchdog rebooted a host after a revert (at most once per
/// generation: the boot-loop guard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebootGuard {
    pub generation: u64,
    pub reason: String,
    pub at_ms: u64,
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
    use crate::state::RebootMark;

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
