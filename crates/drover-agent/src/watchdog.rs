//! Magic rollback: a generation activated with a confirm timeout is reverted
//! unless the controller confirms it over a *new* SSH connection in time.
//!
//! The watchdog is a detached copy of the agent (own process group, stdio on
//! /dev/null) so that it survives the SSH session ending. If it is killed too
//! (a reboot), the next agent start finds the expired `pending.json` and
//! reverts then.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drover_proto::HostState;
use serde::{Deserialize, Serialize};

use crate::boot::HostEnv;
use crate::engine::Engine;
use crate::layout::Layout;
use crate::state::{now_ms, read_json, write_json, Pending, Phase};
use crate::{Context, Result};

/// Set when agents are served inside another process (the controller's
/// simulated transport, `drover::sim`): the current executable is then not
/// an agent, so the watchdog runs as a thread of that process instead.
pub static IN_PROCESS: AtomicBool = AtomicBool::new(false);

pub fn spawn(layout: &Layout, env: HostEnv) -> Result<()> {
    if IN_PROCESS.load(Ordering::Relaxed) {
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
            let (note, reboot) = crate::boot::reboot_after_revert(layout, &last)?;
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
