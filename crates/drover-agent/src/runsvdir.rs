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
//! - it scans only when the directory's modification second differs from
//!   the one it saw at its last scan, and one modified in the current
//!   second makes it sleep a whole second first (a change later in that
//!   second would not change the time again, so it waits it out). The
//!   link the apply just made has put the directory in the current
//!   second: we set its modification time back one second ([`Backdate`]).
//!   That is as safe as the sleep: runsvdir records the earlier second,
//!   so any later change (this second or after) differs from it and is
//!   scanned. Should runsvdir have recorded that very second already (a
//!   change a second earlier, scanned), it sees no change; then, once the
//!   clock has left the link's second, the time is put back, which it
//!   has not recorded, and it scans: the wait of before, no longer.
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

/// A service directory's modification time set back one second, to be
/// put back if runsvdir ignores it (see the module documentation).
#[derive(Debug)]
pub struct Backdate {
    dir: PathBuf,
    /// The second the directory was modified in (Unix time).
    second: i64,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn set_mtime(dir: &Path, second: i64) -> bool {
    let Ok(secs) = u64::try_from(second) else { return false };
    std::fs::File::open(dir).and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))).is_ok()
}

/// If `svdir` was modified in the current second, set its modification
/// time to the second before (runsvdir then scans at once instead of
/// sleeping a second first) and say so; `None` if it was modified earlier
/// (nothing to do) or cannot be changed.
pub fn backdate(svdir: &Path) -> Option<Backdate> {
    let second = std::fs::metadata(svdir).ok()?.mtime();
    if second < now_secs() {
        return None;
    }
    set_mtime(svdir, second - 1).then(|| Backdate { dir: svdir.to_path_buf(), second })
}

impl Backdate {
    /// Whether the clock has left the second the directory was modified in.
    pub fn second_passed(&self) -> bool {
        now_secs() > self.second
    }

    /// Put the modification time back to that second, unless the directory
    /// has been modified since (its time is then newer than ours).
    pub fn restore(&self) {
        if std::fs::metadata(&self.dir).is_ok_and(|m| m.mtime() == self.second - 1) {
            set_mtime(&self.dir, self.second);
        }
    }
}

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
    fn a_directory_changed_this_second_is_set_back_one_second_and_can_be_put_back() {
        let d = tempfile::tempdir().unwrap();
        let mtime = || std::fs::metadata(d.path()).unwrap().mtime();
        std::fs::write(d.path().join("new-service"), "").unwrap();
        let changed = mtime();
        let Some(b) = backdate(d.path()) else {
            // The clock left the second between the write and the check.
            assert!(changed < now_secs());
            return;
        };
        assert_eq!(mtime(), changed - 1, "one second back: runsvdir scans without sleeping");
        b.restore();
        assert_eq!(mtime(), changed, "put back: a second runsvdir has not recorded");
        assert!(!b.second_passed() || now_secs() > changed);

        set_mtime(d.path(), now_secs() - 5);
        assert!(backdate(d.path()).is_none(), "changed seconds ago: runsvdir does not sleep, nothing to do");
        let b = Backdate { dir: d.path().to_path_buf(), second: now_secs() - 5 };
        set_mtime(d.path(), now_secs() - 2);
        b.restore();
        assert_eq!(mtime(), now_secs() - 2, "changed since: left alone");
    }
}
