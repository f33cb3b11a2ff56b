//! The real supervisors, driven through their own command-line tools
//! (`sv`, `systemctl`; OpenRC's `rc-service` in [`super::openrc`]), with
//! argv, never through a shell.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_proto::{Exit, ServiceAction, ServiceStatus, SupervisorState};

use super::Supervise;
use crate::{bail, Result};

/// runit: services are `/etc/service/<name>` links, each run by a `runsv`
/// that runsvdir starts.
pub struct Runit;
/// systemd: `systemctl` on units.
pub struct Systemd;

impl Supervise for Runit {
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        match action {
            ServiceAction::Start | ServiceAction::Restart => {
                wait_for_runsv(name)?;
                let restart = action == ServiceAction::Restart;
                // `sv restart` sleeps 420 ms before its first status check;
                // talk to runsv directly unless a `check` script must decide.
                if crate::runit::has_check(name) {
                    if restart {
                        // See `crate::runit::CRASH_GUARD`: `sv` meets it too.
                        std::thread::sleep(crate::runit::crash_guard_wait(
                            crate::runit::status(name),
                            crate::runit::now_ms(),
                        ));
                    }
                    sv_retrying(&[if restart { "restart" } else { "up" }, name])
                } else {
                    crate::runit::up(name, restart)
                }
            }
            // runit's `reload` sends SIGHUP, what daemons expect for "re-read config".
            ServiceAction::Reload => sv_retrying(&["reload", name]),
            ServiceAction::Stop => {
                // No runsv (a missing service directory, or one left with a
                // dead runsv's FIFO) means it is already stopped.
                if runsv_listening(&Path::new("/etc/service").join(name).join("supervise/ok")) {
                    run(Command::new("sv").args(["-w", "10", "down", name]).env("SVDIR", "/etc/service"))?;
                }
                Ok(())
            }
        }
    }

    /// From runsv's `supervise/status` record (what `sv status` reads):
    /// running with its pid and since when; down while it wants to be up is
    /// a service between two runs of a crash loop (runsv starts it again
    /// after a second).
    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = ServiceStatus::unknown(name);
        let ok = Path::new("/etc/service").join(name).join("supervise/ok");
        let Some(s) = crate::runit::status(name) else {
            st.detail = format!("runit: no status for {name} (no /etc/service/{name}/supervise/status)");
            return st;
        };
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let uptime_ms = s.since_ms.map(|t| now_ms.saturating_sub(t));
        st.state = match (s.state, s.want_up) {
            (crate::runit::State::Run, _) => SupervisorState::Running { pid: (s.pid != 0).then_some(s.pid), uptime_ms },
            (_, true) => SupervisorState::Restarting { exit: None },
            (_, false) => SupervisorState::Down { exit: None },
        };
        st.detail = format!(
            "runit: {}{}, {}s, want {}",
            s.state.word(),
            if s.pid != 0 && s.state == crate::runit::State::Run { format!(" (pid {})", s.pid) } else { String::new() },
            uptime_ms.unwrap_or(0) / 1000,
            if s.want_up { "up" } else { "down" }
        );
        if !runsv_listening(&ok) {
            st.state = SupervisorState::Down { exit: None };
            st.detail = format!("runit: runsv not running for {name}");
        }
        st
    }

    fn log_tail(&self, name: &str) -> Vec<String> {
        super::file_tail(Path::new(&drover_proto::service_log_file(name)))
    }
}

impl Supervise for Systemd {
    /// `enable` and `disable` reload systemd's whole configuration after
    /// changing the links, unless told `--no-reload`: a second
    /// `daemon-reload` after the one [`crate::services::perform`] runs
    /// whenever a unit file changed (on a lab host: `enable --now` 506 ms,
    /// with `--no-reload` 28 ms; issue #27). A new service's unit is a changed file, so that
    /// reload has happened before the start; a unit never loaded is read
    /// from disk when started; and a stop comes before the swap whose
    /// removed unit files are then reloaded away.
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        let args: &[&str] = match action {
            ServiceAction::Start => &["enable", "--no-reload", "--now", name],
            ServiceAction::Restart => &["restart", name],
            ServiceAction::Reload => &["reload", name],
            ServiceAction::Stop => &["disable", "--no-reload", "--now", name],
        };
        run(Command::new("systemctl").args(args))
    }

    fn daemon_reload(&self) -> Result<()> {
        run(Command::new("systemctl").arg("daemon-reload"))
    }

    /// From `systemctl show`: the unit's active state, its main process
    /// and since when it runs, and how its last process ended (systemd
    /// knows the exit code). `activating (auto-restart)` is a crash loop
    /// waiting for its next start.
    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = ServiceStatus::unknown(name);
        let out = stdout(Command::new("systemctl").args(["show", name, SYSTEMD_PROPS]));
        let props: std::collections::HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
        st.state = systemd_state(&props, monotonic_us());
        st.detail = format!(
            "systemd: {} ({}){}",
            props.get("ActiveState").unwrap_or(&"?"),
            props.get("SubState").unwrap_or(&"?"),
            props.get("NRestarts").filter(|n| **n != "0").map(|n| format!(", restarted {n} times")).unwrap_or_default()
        );
        st
    }

    /// The unit's journal, messages only (`-o cat`): what it printed, and
    /// what systemd said about it (`Main process exited, code=exited`).
    fn log_tail(&self, name: &str) -> Vec<String> {
        let n = drover_proto::LOG_TAIL_LINES.to_string();
        let out = stdout(Command::new("journalctl").args(["--unit", name, "-n", &n, "-o", "cat", "--no-pager", "-q"]));
        drover_proto::tail_lines(&out, drover_proto::LOG_TAIL_LINES, drover_proto::LOG_TAIL_BYTES)
    }
}

/// What [`Systemd::status`] asks `systemctl show` for.
const SYSTEMD_PROPS: &str =
    "--property=LoadState,ActiveState,SubState,MainPID,NRestarts,ExecMainCode,ExecMainStatus,ExecMainStartTimestampMonotonic";

/// `systemctl show`'s properties → the state, `now_us` being
/// `CLOCK_MONOTONIC` in microseconds (systemd's `…Monotonic` clock).
fn systemd_state(props: &std::collections::HashMap<&str, &str>, now_us: u64) -> SupervisorState {
    let num = |k: &str| props.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let exit = match (num("ExecMainCode"), props.get("ExecMainStatus").and_then(|v| v.trim().parse::<i32>().ok())) {
        (Some(1), Some(c)) => Some(Exit::Code(c)),
        (Some(2 | 3), Some(s)) => Some(Exit::Signal(s)),
        _ => None,
    };
    match (props.get("ActiveState").copied(), props.get("SubState").copied()) {
        _ if props.get("LoadState") == Some(&"not-found") => SupervisorState::Down { exit: None },
        (Some("active" | "reloading"), _) => SupervisorState::Running {
            pid: num("MainPID").filter(|p| *p != 0).and_then(|p| u32::try_from(p).ok()),
            uptime_ms: num("ExecMainStartTimestampMonotonic")
                .filter(|t| *t != 0)
                .map(|t| now_us.saturating_sub(t) / 1000),
        },
        (Some("activating"), Some("auto-restart")) => SupervisorState::Restarting { exit },
        (Some("activating"), _) => SupervisorState::Starting,
        (Some("failed"), _) => SupervisorState::Failed { exit },
        (Some("inactive" | "deactivating"), _) => SupervisorState::Down { exit },
        _ => SupervisorState::Unknown,
    }
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000
}

fn stdout(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// Wait until the service's `runsv` listens on `supervise/ok` (`sv` fails
/// before). For a new service that is runsvdir's next scan, 0–5 s away
/// (it looks every 5 s): this wait was most of a first deploy's time, so
/// runsvdir is woken through its log pipe when it has one, with
/// `/etc/service`'s modification time set back a second so that it scans
/// at once (see [`crate::runsvdir`] for how and why that way), and
/// otherwise waited for.
/// Looking costs one `open`, so look often.
fn wait_for_runsv(name: &str) -> Result<()> {
    let svdir = Path::new("/etc/service");
    let ok = svdir.join(name).join("supervise/ok");
    let start = Instant::now();
    let mut runsvdir = None;
    let mut backdate = None;
    let mut next_wake = start;
    while !runsv_listening(&ok) {
        if start.elapsed() > Duration::from_secs(15) {
            bail!("service {name}: runsvdir did not pick up /etc/service/{name} within 15 s (is runsvdir running?)");
        }
        let now = Instant::now();
        if now >= next_wake {
            // No runsvdir with a log pipe: wait for its scan.
            next_wake = start + Duration::from_secs(3600);
            if let Some(r) = runsvdir.get_or_insert_with(|| crate::runsvdir::find(svdir)) {
                match &backdate {
                    None => backdate = Some(crate::runsvdir::backdate(svdir)),
                    Some(Some(b)) if b.second_passed() => {
                        b.restore();
                        backdate = Some(None);
                    }
                    Some(_) => {}
                }
                if r.wake() {
                    next_wake = now + crate::runsvdir::REWAKE;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Whether a `runsv` supervises the service whose `supervise/ok` this is:
/// runsv holds that FIFO open for reading, so opening it for writing without
/// blocking succeeds, and fails (ENXIO) when nobody reads it. The FIFO's mere
/// existence says nothing: runit's `supervise/` stays in `/etc/sv/<name>`
/// after the service is removed (drover deletes only what it wrote), so a
/// service removed and added again (an instance scaled away and back) has
/// a stale FIFO until runsvdir starts its new runsv. This is `sv`'s own
/// check ("runsv not running").
fn runsv_listening(ok: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(ok).is_ok()
}

/// `supervise/ok` appears slightly before runsv accepts control commands;
/// retry `sv` briefly across that window.
fn sv_retrying(args: &[&str]) -> Result<()> {
    let mut last = Ok(());
    for _ in 0..20 {
        last = run(Command::new("sv").args(args).env("SVDIR", "/etc/service"));
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

pub(super) fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| crate::AgentError::new(format!("run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            format!("{} {}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim())
                .trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_properties_give_the_state_pid_uptime_and_exit_code() {
        let props = |text: &'static str| text.lines().filter_map(|l| l.split_once('=')).collect();
        let running = "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=321\nNRestarts=0\nExecMainCode=0\nExecMainStatus=0\nExecMainStartTimestampMonotonic=5000000";
        assert_eq!(
            systemd_state(&props(running), 7_500_000),
            SupervisorState::Running { pid: Some(321), uptime_ms: Some(2500) }
        );
        let looping = "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nNRestarts=4\nExecMainCode=1\nExecMainStatus=127\nExecMainStartTimestampMonotonic=0";
        assert_eq!(systemd_state(&props(looping), 1), SupervisorState::Restarting { exit: Some(Exit::Code(127)) });
        let killed = "ActiveState=failed\nSubState=failed\nExecMainCode=2\nExecMainStatus=9";
        assert_eq!(systemd_state(&props(killed), 1), SupervisorState::Failed { exit: Some(Exit::Signal(9)) });
        assert_eq!(
            systemd_state(&props("LoadState=not-found\nActiveState=inactive"), 1),
            SupervisorState::Down { exit: None }
        );
        assert_eq!(systemd_state(&props("ActiveState=activating\nSubState=start"), 1), SupervisorState::Starting);
        assert_eq!(systemd_state(&props(""), 1), SupervisorState::Unknown);
    }

    #[test]
    fn runsv_listens_only_while_someone_holds_its_ok_fifo_open() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        assert!(!runsv_listening(&ok), "no supervise/ok: no runsv");
        rustix::fs::mkfifoat(rustix::fs::CWD, &ok, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        assert!(!runsv_listening(&ok), "a FIFO left by a runsv that is gone");
        let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&ok).unwrap();
        assert!(runsv_listening(&ok), "runsv holds it open");
        drop(reader);
        assert!(!runsv_listening(&ok), "runsv ended");
    }
}
