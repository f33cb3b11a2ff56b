//! Connections that persist (#27 item 1, `[ssh] persist`): commands on lab
//! hosts through the project's resident process, which holds one SSH
//! session per host between commands. Logins are counted from each host's
//! sshd log (see `crate::jump::logins`): a command through a warm resident
//! logs in nowhere.
//!
//! Each test has a private `XDG_RUNTIME_DIR`, so its resident's socket is
//! its own; residents still running when a test ends are killed.
//!
//! Needs root (the lab does), except `sim` (simulated hosts).

mod agents;
mod confirm;
mod fallback;
mod reconnect;
mod sim;
mod warm;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::{Fleet, Run};

/// A private runtime directory for a test's residents.
pub struct Residents {
    dir: tempfile::TempDir,
}

impl Residents {
    pub fn new() -> Residents {
        Residents { dir: tempfile::tempdir().unwrap() }
    }

    /// `drover args` in `f`'s project with this runtime directory.
    pub fn drover(&self, f: &Fleet, args: &[&str]) -> Run {
        f.drover_env(args, &[("XDG_RUNTIME_DIR", self.dir.path().as_os_str()), ("RUST_LOG", OsStr::new("warn"))])
    }

    /// `drover -C dir args` with this runtime directory (a project other
    /// than a fleet's, or a command to spawn).
    pub fn command(&self, dir: &std::path::Path, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(crate::support::DROVER);
        c.arg("-C").arg(dir).args(args).stdin(std::process::Stdio::null());
        c.env("XDG_RUNTIME_DIR", self.dir.path()).env_remove("SSH_AUTH_SOCK").env_remove("DROVER_STATE_URL");
        c
    }

    /// The socket directory residents of this runtime directory use.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("drover")
    }

    /// Pids of the residents serving now (from their pid files).
    pub fn pids(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(self.socket_dir()) else { return vec![] };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension() == Some(OsStr::new("pid")))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .filter(|pid| alive(*pid))
            .collect()
    }

    /// The one resident serving now.
    pub fn pid(&self) -> u32 {
        let pids = self.pids();
        assert_eq!(pids.len(), 1, "one resident expected, found {pids:?}");
        pids[0]
    }
}

impl Drop for Residents {
    fn drop(&mut self) {
        for pid in self.pids() {
            kill(pid);
        }
    }
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("resident"))
}

pub fn kill(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Turn the resident on in `f`'s project, held for `idle`.
pub fn enable(f: &Fleet, idle: &str) {
    enable_in(&f.project(), idle);
}

/// Turn the resident on in the project at `dir`, held for `idle`.
pub fn enable_in(dir: &std::path::Path, idle: &str) {
    crate::support::append(&dir.join("drover.toml"), &format!("\n[ssh]\npersist = \"{idle}\"\n"));
}

/// Logins to each of `f`'s hosts so far.
pub fn logins(f: &Fleet) -> Vec<usize> {
    f.lab_hosts().iter().map(crate::jump::logins).collect()
}

/// Each host's `via` in an `--json` report.
pub fn vias(r: &Run) -> Vec<String> {
    r.hosts().iter().map(|h| h["via"].as_str().unwrap_or("(none)").to_string()).collect()
}

/// Run `cmd` (an `--json` command) until every host went through the
/// resident: the first command after the resident starts (or loses a
/// session) goes direct while the resident logs in in the background.
/// Returns the last run.
pub fn warm_up(mut cmd: impl FnMut() -> Run) -> Run {
    let start = std::time::Instant::now();
    loop {
        let r = cmd();
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        if vias(&r).iter().all(|v| v == "resident") {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never through the resident: {:?}", vias(&r));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until `pid` is gone, at most `limit`.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while alive(pid) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
