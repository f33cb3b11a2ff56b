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

use crate::engine::Engine;
use crate::layout::Layout;
use crate::state::{now_ms, read_json, write_json, Pending, Phase};
use crate::{Context, Result};

/// Set when agents are served inside another process (the controller's
/// simulated transport, `drover::sim`): the current executable is then not
/// an agent, so the watchdog runs as a thread of that process instead.
pub static IN_PROCESS: AtomicBool = AtomicBool::new(false);

pub fn spawn(layout: &Layout) -> Result<()> {
    if IN_PROCESS.load(Ordering::Relaxed) {
        let layout = layout.clone();
        std::thread::Builder::new()
            .name("drover-watchdog".into())
            .spawn(move || {
                let _ = run(&layout);
            })
            .ctx(|| "start watchdog".into())?;
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    crate::reexec::command()
        .arg("watchdog")
        .arg("--root")
        .arg(layout.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ctx(|| "start watchdog".into())?;
    Ok(())
}

/// Wait for the deadline, then revert if still unconfirmed.
pub fn run(layout: &Layout) -> Result<()> {
    loop {
        let Some(p) = read_json::<Pending>(&layout.pending())? else { return Ok(()) };
        let now = now_ms();
        if p.phase == Phase::AwaitingConfirm && now >= p.deadline_ms {
            break;
        }
        std::thread::sleep(Duration::from_millis((p.deadline_ms - now).min(200)));
    }
    // Opening the engine takes the lock and reverts an expired pending
    // generation as part of its recovery.
    let engine = Engine::open(layout.clone(), Duration::from_secs(3600))?;
    if let Some(recovered) = engine.recovered {
        let report = Report { recovered, revert_errors: engine.revert_errors };
        write_json(&layout.watchdog_report(), &report)?;
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
