//! OpenRC: `rc-service` and `rc-update` on init scripts, and what
//! `supervise-daemon` records about the process it keeps up.
//!
//! `rc-service NAME status` says, by its exit status (the documented
//! interface: the words go to stdout or stderr depending on the state),
//! whether OpenRC thinks the service started, and whether the daemon it
//! started still runs (`crashed` when not). For a service under
//! `supervise-daemon` (drover's generated scripts) that daemon is the
//! supervisor, which outlives every crash of the service itself: it
//! records the service's process in `/run/openrc/options/NAME/child_pid`
//! each time it starts it, so that pid, alive or dead, tells a running
//! service from one between two runs of a crash loop, and `/proc` gives
//! its start time.

use std::path::Path;
use std::process::Command;

use drover_proto::{ServiceAction, ServiceStatus, SupervisorState};

use super::system::run;
use super::Supervise;
use crate::Result;

/// OpenRC: services are `/etc/init.d/NAME`, enabled by their link in the
/// `default` runlevel.
pub struct OpenRc;

/// Where OpenRC keeps a service's recorded values (`service_set_value`).
const OPTIONS: &str = "/run/openrc/options";

impl Supervise for OpenRc {
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        match action {
            ServiceAction::Start => {
                run(Command::new("rc-update").args(["add", name, "default"]))?;
                // `start` of a service OpenRC thinks started (its daemon
                // since crashed) only warns: restart it instead.
                let verb = if rc_status(name) == Some(RC_CRASHED) { "restart" } else { "start" };
                run(Command::new("rc-service").args([name, verb]))
            }
            ServiceAction::Restart => run(Command::new("rc-service").args([name, "restart"])),
            ServiceAction::Reload => run(Command::new("rc-service").args([name, "reload"])),
            ServiceAction::Stop => {
                // A script already gone, or a service not in the runlevel
                // (drained twice, never started), is stopped already.
                if Path::new("/etc/init.d").join(name).exists() {
                    run(Command::new("rc-service").args([name, "stop"]))?;
                }
                if std::fs::symlink_metadata(Path::new("/etc/runlevels/default").join(name)).is_ok() {
                    run(Command::new("rc-update").args(["del", name, "default"]))?;
                }
                Ok(())
            }
        }
    }

    /// `rc-service NAME status`'s exit status, then supervise-daemon's
    /// `child_pid`: running (with pid and uptime) while that process
    /// lives, restarting while supervise-daemon waits to start it again.
    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = ServiceStatus::unknown(name);
        let code = rc_status(name);
        let child = std::fs::read_to_string(Path::new(OPTIONS).join(name).join("child_pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let child_proc = child.map(|pid| (pid, process(pid)));
        st.state = state(code, child_proc);
        let word = match code {
            Some(0) => "started",
            Some(3) => "stopped",
            Some(4) => "stopping",
            Some(8) => "starting",
            Some(16) => "inactive",
            Some(RC_CRASHED) => "crashed",
            Some(64) => "unsupervised",
            _ => "unknown",
        };
        st.detail = match child_proc {
            Some((pid, Some(_))) => format!("openrc: {word}, pid {pid}"),
            Some((pid, None)) => format!("openrc: {word}, its process {pid} exited (supervise-daemon starts it again)"),
            None => format!("openrc: {word}"),
        };
        st
    }

    fn log_tail(&self, name: &str) -> Vec<String> {
        super::file_tail(Path::new(&drover_proto::service_log_file(name)))
    }
}

/// `rc-service NAME status`: the daemon OpenRC started for it is gone.
const RC_CRASHED: i32 = 32;

/// `rc-service NAME status`'s exit status (`None`: it could not run).
fn rc_status(name: &str) -> Option<i32> {
    Command::new("rc-service").args([name, "status"]).output().ok().and_then(|o| o.status.code())
}

/// A live process's uptime in ms (`None`: gone, or a zombie).
fn process(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    // SAFETY: sysconf has no memory arguments.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|h| *h > 0)?;
    process_uptime_ms(&stat, &uptime, hz)
}

/// From `/proc/PID/stat` (fields after the command's closing parenthesis:
/// the state is the first, the start time in clock ticks since boot the
/// 20th) and `/proc/uptime` (seconds since boot).
fn process_uptime_ms(stat: &str, uptime: &str, hz: u64) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    let start_ms = fields.get(19)?.parse::<u64>().ok()? * 1000 / hz;
    let now_ms = (uptime.split_whitespace().next()?.parse::<f64>().ok()? * 1000.0) as u64;
    Some(now_ms.saturating_sub(start_ms))
}

/// The state from `rc-service status`'s exit status and supervise-daemon's
/// child: `(pid, its uptime if alive)`.
fn state(code: Option<i32>, child: Option<(u32, Option<u64>)>) -> SupervisorState {
    match (code, child) {
        (Some(0), Some((pid, Some(up)))) => SupervisorState::Running { pid: Some(pid), uptime_ms: Some(up) },
        // supervise-daemon runs, the service does not: between two runs.
        (Some(0), Some((_, None))) => SupervisorState::Restarting { exit: None },
        // Started by something else than supervise-daemon: no pid to show.
        (Some(0), None) => SupervisorState::Running { pid: None, uptime_ms: None },
        (Some(8), _) => SupervisorState::Starting,
        (Some(RC_CRASHED | 64), _) => SupervisorState::Failed { exit: None },
        (Some(3 | 4 | 16), _) => SupervisorState::Down { exit: None },
        _ => SupervisorState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_and_the_supervised_child_give_the_state() {
        assert_eq!(
            state(Some(0), Some((42, Some(1500)))),
            SupervisorState::Running { pid: Some(42), uptime_ms: Some(1500) }
        );
        assert_eq!(state(Some(0), Some((42, None))), SupervisorState::Restarting { exit: None });
        assert_eq!(state(Some(0), None), SupervisorState::Running { pid: None, uptime_ms: None });
        assert_eq!(state(Some(RC_CRASHED), Some((42, None))), SupervisorState::Failed { exit: None });
        assert_eq!(state(Some(3), None), SupervisorState::Down { exit: None });
        assert_eq!(state(Some(8), None), SupervisorState::Starting);
        assert_eq!(state(None, None), SupervisorState::Unknown);
    }

    #[test]
    fn a_process_uptime_comes_from_its_start_time_and_a_zombie_has_none() {
        let stat = |state: &str| {
            format!("42 (python3 -u (x)) {state} 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1000 1 1 0 0")
        };
        // Started at tick 1000 (10 s at 100 Hz), now 12.5 s since boot.
        assert_eq!(process_uptime_ms(&stat("S"), "12.50 3.00", 100), Some(2500));
        assert_eq!(process_uptime_ms(&stat("Z"), "12.50 3.00", 100), None);
        assert_eq!(process_uptime_ms("garbage", "12.50", 100), None);
    }
}
