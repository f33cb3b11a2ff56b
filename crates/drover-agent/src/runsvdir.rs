//! Waking runit's `runsvdir` so that a new service starts now, not on its
//! next scan.
//!
//! runsvdir (runit's `runsvdir.c`) looks at its service directory every
//! 5 s (every 1 s right after it found something new) and starts a `runsv`
//! for each new entry; nothing in runit asks it to look sooner. A first
//! deploy of a runit service therefore waited 0–5 s for that scan (3.1 s
//! median, 3.5 s worst on 20 hosts, issue #27), longer than everything
//! else in the apply together.
//!
//! What does not work, and why this module does what it does:
//! - Starting `runsv` for the new directory ourselves: runsvdir's own runsv
//!   for it, when its scan comes, fails to take `supervise/lock` and exits
//!   111; runsvdir then starts another every second for as long as ours
//!   runs (it retries entries whose runsv is gone), logging a lock failure
//!   each time. Handing the service over to runsvdir's runsv would restart
//!   it. runsv never adopts a running process.
//! - Signals: runsvdir handles only TERM (exit) and HUP (stop every service
//!   and exit); SIGCHLD is not caught, so it does not cut its sleep short.
//!
//! What does: runsvdir started with a log argument (`runsvdir -P
//! /etc/service 'log: ...'`, as Debian's `/etc/runit/2` and
//! `runsvdir-start` and Void's stage 2 start it) has its standard error on
//! a pipe it watches in the same `poll` it sleeps in. One byte written to
//! that pipe wakes it; a NUL byte is dropped from the status it shows in
//! `ps` (only non-zero bytes are kept). Once awake it rescans when two of
//! its own rules allow:
//! - at most once a second (`stampcheck`): a wake within a second of its
//!   last look is ignored, so we wake it again every [`REWAKE`];
//! - a directory modified in the current second makes it sleep a whole
//!   second before scanning (so a change later in that second is not
//!   missed): we wake it only once the clock is past the directory's
//!   modification second, which costs under a second and usually much less.
//!
//! A runsvdir without a log argument has no such pipe (its standard error
//! is whatever it inherited): then there is nothing to wake and the caller
//! waits for the scan, as before.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a wake is repeated while the new service's runsv has not
/// appeared (runsvdir ignores wakes within a second of its last look).
pub const REWAKE: Duration = Duration::from_millis(200);

/// A runsvdir that can be woken: its pid and the write end of its log pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runsvdir {
    pub pid: u32,
    log_pipe: PathBuf,
}

/// From runsvdir's argv (after the program name): its service directory
/// and whether it has a log argument. `runsvdir [-P] dir [log]`.
pub fn parse_args(args: &[&str]) -> Option<(String, bool)> {
    let mut rest = args;
    if let Some(first) = rest.first() {
        if first.starts_with('-') {
            rest = &rest[1..];
        }
    }
    let dir = rest.first()?;
    Some((dir.to_string(), rest.len() > 1))
}

/// The runsvdir that supervises `svdir` (the same directory, however it
/// was named on its command line) and was started with a log argument.
pub fn find(svdir: &Path) -> Option<Runsvdir> {
    let want = std::fs::metadata(svdir).ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let proc = entry.path();
        if !std::fs::read_to_string(proc.join("comm")).is_ok_and(|c| c.trim() == "runsvdir") {
            continue;
        }
        let Ok(cmdline) = std::fs::read(proc.join("cmdline")) else { continue };
        let args: Vec<&str> =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).filter_map(|a| std::str::from_utf8(a).ok()).collect();
        let Some((dir, has_log)) = parse_args(args.get(1..).unwrap_or(&[])) else { continue };
        if !has_log {
            continue;
        }
        // A relative directory is relative to where runsvdir was started
        // (it returns there after each scan).
        let dir = if dir.starts_with('/') { PathBuf::from(dir) } else { proc.join("cwd").join(dir) };
        let same = std::fs::metadata(&dir).is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino());
        if same {
            return Some(Runsvdir { pid, log_pipe: proc.join("fd/2") });
        }
    }
    None
}

impl Runsvdir {
    /// Write one NUL byte to its log pipe. False if that is no pipe (any
    /// more) or cannot be written; a full pipe still wakes it.
    pub fn wake(&self) -> bool {
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.log_pipe)
        else {
            return false;
        };
        if !f.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
            return false;
        }
        match f.write(&[0]) {
            Ok(n) => n == 1,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Whether runsvdir, woken now, would scan `svdir` without first sleeping
/// a second: the clock is past the second the directory was last modified
/// in (a modification time in the future, a clock set back, also passes
/// after [`MTIME_PATIENCE`] so that the wake is never held back for long).
pub fn past_mtime_second(svdir: &Path) -> bool {
    let Ok(m) = std::fs::metadata(svdir) else { return true };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(i64::MAX) > m.mtime()
}

/// How long a caller holds the wake back for [`past_mtime_second`] at most.
pub const MTIME_PATIENCE: Duration = Duration::from_millis(1100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runsvdir_args_give_the_directory_and_whether_it_logs() {
        assert_eq!(parse_args(&["-P", "/etc/service", "log: ....."]), Some(("/etc/service".into(), true)));
        assert_eq!(parse_args(&["-P", "/etc/service"]), Some(("/etc/service".into(), false)));
        assert_eq!(parse_args(&["/var/service", "log: ..."]), Some(("/var/service".into(), true)));
        assert_eq!(parse_args(&["/etc/service"]), Some(("/etc/service".into(), false)));
        assert_eq!(parse_args(&["-P"]), None);
        assert_eq!(parse_args(&[]), None);
    }

    #[test]
    fn a_wake_writes_one_nul_byte_to_the_log_pipe_and_needs_a_pipe() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("log");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let r = Runsvdir { pid: 1, log_pipe: fifo.clone() };
        assert!(!r.wake(), "nobody reads the pipe: no runsvdir to wake");
        let mut reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        assert!(r.wake());
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut reader, &mut got);
        assert_eq!(got, vec![0u8], "one NUL byte: runsvdir's `ps` status is left alone");
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!Runsvdir { pid: 1, log_pipe: file.clone() }.wake(), "a plain file is no log pipe");
        assert_eq!(std::fs::read(&file).unwrap(), b"", "and is not written to");
    }

    #[test]
    fn the_wake_waits_for_the_clock_to_leave_the_modification_second() {
        let d = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let at = |t: SystemTime| {
            std::fs::File::open(d.path()).unwrap().set_times(std::fs::FileTimes::new().set_modified(t)).unwrap()
        };
        at(now - Duration::from_secs(2));
        assert!(past_mtime_second(d.path()));
        at(now + Duration::from_secs(5));
        assert!(!past_mtime_second(d.path()), "modified in this second (or later): runsvdir would sleep first");
    }
}
