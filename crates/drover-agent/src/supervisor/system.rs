//! The real supervisors, driven through their own command-line tools
//! (`sv`, `systemctl`, `rc-service`), with argv, never through a shell.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_proto::{ServiceAction, ServiceStatus};

use super::{unknown, Supervise};
use crate::{bail, Result};

/// runit: services are `/etc/service/<name>` links, each run by a `runsv`
/// that runsvdir starts.
pub struct Runit;
/// systemd: `systemctl` on units.
pub struct Systemd;
/// OpenRC: `rc-service` and `rc-update` on init scripts.
pub struct OpenRc;

impl Supervise for Runit {
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        match action {
            ServiceAction::Start | ServiceAction::Restart => {
                wait_for_runsv(name)?;
                let restart = action == ServiceAction::Restart;
                // `sv restart` sleeps 420 ms before its first status check;
                // talk to runsv directly unless a `check` script must decide.
                if crate::runit::has_check(name) {
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

    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = unknown(name);
        // "run: web: (pid 123) 45s; run: log: (pid 12) 50s"
        let s = stdout(Command::new("sv").args(["status", name]).env("SVDIR", "/etc/service"));
        let main = s.split(';').next().unwrap_or("").trim();
        st.state = main.split(':').next().unwrap_or("unknown").trim().to_string();
        st.pid = main.split("(pid ").nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse().ok());
        st.uptime_s = main.rsplit(' ').next().and_then(|t| t.trim_end_matches('s').parse().ok());
        st.detail = main.to_string();
        st
    }
}

impl Supervise for Systemd {
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        let args: &[&str] = match action {
            ServiceAction::Start => &["enable", "--now", name],
            ServiceAction::Restart => &["restart", name],
            ServiceAction::Reload => &["reload", name],
            ServiceAction::Stop => &["disable", "--now", name],
        };
        run(Command::new("systemctl").args(args))
    }

    fn daemon_reload(&self) -> Result<()> {
        run(Command::new("systemctl").arg("daemon-reload"))
    }

    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = unknown(name);
        st.state = stdout(Command::new("systemctl").args(["is-active", name])).trim().to_string();
        st.pid = stdout(Command::new("systemctl").args(["show", "-p", "MainPID", "--value", name]))
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != 0);
        st
    }
}

impl Supervise for OpenRc {
    fn control(&self, name: &str, action: ServiceAction) -> Result<()> {
        match action {
            ServiceAction::Start => {
                run(Command::new("rc-update").args(["add", name, "default"]))?;
                run(Command::new("rc-service").args([name, "start"]))
            }
            ServiceAction::Restart => run(Command::new("rc-service").args([name, "restart"])),
            ServiceAction::Reload => run(Command::new("rc-service").args([name, "reload"])),
            ServiceAction::Stop => {
                run(Command::new("rc-service").args([name, "stop"]))?;
                run(Command::new("rc-update").args(["del", name, "default"]))
            }
        }
    }

    fn status(&self, name: &str) -> ServiceStatus {
        let mut st = unknown(name);
        let s = stdout(Command::new("rc-service").args([name, "status"]));
        st.state = if s.contains("started") { "run".into() } else { "down".into() };
        st.detail = s.trim().to_string();
        st
    }
}

fn stdout(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// runsvdir notices a new service directory within 5 s (it looks every 5 s:
/// this wait is most of a first deploy's time); `sv` fails until the
/// service's `runsv` listens on `supervise/ok`. Looking costs one `open`, so
/// look often.
fn wait_for_runsv(name: &str) -> Result<()> {
    let ok = Path::new("/etc/service").join(name).join("supervise/ok");
    let start = Instant::now();
    while !runsv_listening(&ok) {
        if start.elapsed() > Duration::from_secs(15) {
            bail!("service {name}: runsvdir did not pick up /etc/service/{name} within 15 s (is runsvdir running?)");
        }
        std::thread::sleep(Duration::from_millis(10));
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

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| crate::AgentError(format!("run {:?}: {e}", cmd.get_program())))?;
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
