//! Starting and restarting runit services without `sv`'s wait loop.
//!
//! `sv up` / `sv restart` send control characters to the service's runsv and
//! then poll its status, sleeping between looks for most of a second: a
//! restart that takes runsv a few milliseconds cost each deploy most of a
//! second, on every host. We send the same characters to the same
//! `supervise/control` FIFO and read the same `supervise/status` record, but
//! look every 5 ms, and wait for the same thing `sv` waits for: the service
//! running (for a restart, a new process). A service directory with a
//! `check` script (runit's own readiness hook, which `sv` runs) is left to
//! `sv`, which knows how to run it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{bail, Result};

/// How long `sv` waits by default (`-w 7`) before calling it a timeout.
const WAIT: Duration = Duration::from_secs(7);
const POLL: Duration = Duration::from_millis(5);

/// What runsv's 20-byte `supervise/status` record says (runit's
/// `runsv.c`, `update_status`): since when the state holds (bytes 0..12,
/// TAI64N), the pid (bytes 12..16, little-endian), whether it is wanted up
/// (byte 17: `u` or `d`) and the state (byte 19: 0 down, 1 run, 2 finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub pid: u32,
    pub running: bool,
    pub state: State,
    pub want_up: bool,
    /// When the state last changed (for `run`: when the process started),
    /// in Unix milliseconds.
    pub since_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Down,
    Run,
    /// The process ended; `./finish` runs.
    Finish,
}

impl State {
    /// `sv status`'s word.
    pub fn word(self) -> &'static str {
        match self {
            State::Down => "down",
            State::Run => "run",
            State::Finish => "finish",
        }
    }
}

/// The TAI64 label of the Unix epoch as runit writes it (2^62 + 10 s).
const TAI64_UNIX: u64 = 4_611_686_018_427_387_914;

pub fn parse_status(b: &[u8]) -> Option<Status> {
    if b.len() < 20 {
        return None;
    }
    let secs = u64::from_be_bytes(b[0..8].try_into().ok()?);
    let nanos = u32::from_be_bytes(b[8..12].try_into().ok()?);
    let since_ms = secs.checked_sub(TAI64_UNIX).map(|s| s * 1000 + u64::from(nanos) / 1_000_000);
    let state = match b[19] {
        1 => State::Run,
        2 => State::Finish,
        _ => State::Down,
    };
    Some(Status {
        pid: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        running: state == State::Run,
        state,
        want_up: b[17] == b'u',
        since_ms,
    })
}

fn supervise(name: &str) -> PathBuf {
    Path::new("/etc/service").join(name).join("supervise")
}

/// The service's status record, if runsv wrote one.
pub fn status(name: &str) -> Option<Status> {
    parse_status(&std::fs::read(supervise(name).join("status")).ok()?)
}

/// Whether the service has a `check` script (then `sv` must do the waiting).
pub fn has_check(name: &str) -> bool {
    Path::new("/etc/service").join(name).join("check").exists()
}

/// `sv up` (`restart: false`) or `sv restart` (`restart: true`): send `u`, or
/// `t`, `c`, `u` (term, cont, up), and wait until runsv reports the service
/// running, in a process other than the one before for a restart. The
/// caller has made sure runsv listens (`supervise/ok`).
pub fn up(name: &str, restart: bool) -> Result<()> {
    if restart {
        std::thread::sleep(crash_guard_wait(status(name), now_ms()));
    }
    let before = status(name);
    let cmds: &[u8] = if restart { b"tcu" } else { b"u" };
    let control = supervise(name).join("control");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&control).map_err(|e| {
                crate::AgentError::new(format!("service {name}: runsv does not listen on {}: {e}", control.display()))
            })?;
        f.write_all(cmds)
            .map_err(|e| crate::AgentError::new(format!("service {name}: write to {}: {e}", control.display())))?;
    }
    let start = Instant::now();
    loop {
        if let Some(now) = status(name) {
            let fresh = !restart || before.is_none_or(|b| b.pid != now.pid);
            if now.running && now.pid != 0 && fresh {
                return Ok(());
            }
        }
        if start.elapsed() > WAIT {
            let what = if restart { "restarted" } else { "started" };
            bail!("service {name}: runsv did not report it {what} within {WAIT:?} (see its log: `drover logs {name}`)");
        }
        std::thread::sleep(POLL);
    }
}

/// How long runsv must have run a process before it ends for runsv not to
/// take the end for a crash.
///
/// When the process ends, runsv (`runsv.c`, after reaping it) sleeps a whole
/// second if it ran for less than one (`if (taia_less(&start, &deadline))
/// sleep(1)`, its guard against a crash loop), and reads no command while
/// it sleeps. A restart of a service started under a second before (a
/// rollback right after an apply, two applies in a row, a restart right
/// after a first start) therefore took over a second: the 1-s restart
/// outliers of issue #27 (restart 35 ms median, 1021 ms worst on 20 hosts).
pub const CRASH_GUARD: Duration = Duration::from_secs(1);

/// How long to wait before asking runsv to restart a service in the state
/// `st`, at `now_ms` (Unix milliseconds): until its process has run
/// [`CRASH_GUARD`] (plus a few milliseconds for the clock's granularity),
/// nothing if it has already or does not run. Never longer than the sleep
/// runsv would add, usually much shorter: it waits out only what is left
/// of the second.
pub fn crash_guard_wait(st: Option<Status>, now_ms: u64) -> Duration {
    const MARGIN_MS: u64 = 5;
    let Some(Status { state: State::Run, since_ms: Some(since), .. }) = st else { return Duration::ZERO };
    let guard = CRASH_GUARD.as_millis() as u64 + MARGIN_MS;
    Duration::from_millis(guard.saturating_sub(now_ms.saturating_sub(since)).min(guard))
}

/// Wall-clock Unix milliseconds: runsv stamps its status with the wall
/// clock (`taia_now`), so this is what to compare it with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_record_gives_pid_state_want_and_since() {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&(TAI64_UNIX + 1_700_000_000).to_be_bytes());
        b[8..12].copy_from_slice(&250_000_000u32.to_be_bytes());
        b[12..16].copy_from_slice(&4242u32.to_le_bytes());
        b[17] = b'u';
        b[19] = 1;
        let s = parse_status(&b).unwrap();
        assert_eq!((s.pid, s.running, s.state, s.want_up), (4242, true, State::Run, true));
        assert_eq!(s.since_ms, Some(1_700_000_000_250));
        b[19] = 2; // finish: the old process is gone, ./finish runs
        assert_eq!(parse_status(&b).map(|s| (s.running, s.state)), Some((false, State::Finish)));
        b[17] = b'd';
        b[19] = 0;
        assert_eq!(parse_status(&b).map(|s| (s.state, s.want_up)), Some((State::Down, false)));
        assert_eq!(parse_status(&b[..19]), None, "a short read is no status");
    }

    #[test]
    fn a_restart_waits_out_only_the_rest_of_runsvs_first_second() {
        let run = |since_ms| Some(Status { pid: 7, running: true, state: State::Run, want_up: true, since_ms });
        let at = 1_700_000_000_000;
        assert_eq!(crash_guard_wait(run(Some(at - 900)), at), Duration::from_millis(105), "ran 900 ms: 105 ms left");
        assert_eq!(crash_guard_wait(run(Some(at)), at), Duration::from_millis(1005));
        assert_eq!(crash_guard_wait(run(Some(at - 5000)), at), Duration::ZERO, "ran long: restart at once");
        assert_eq!(
            crash_guard_wait(run(Some(at + 3000)), at),
            Duration::from_millis(1005),
            "a start stamped in the future waits at most the guard"
        );
        assert_eq!(crash_guard_wait(run(None), at), Duration::ZERO);
        let down = Status { pid: 0, running: false, state: State::Down, want_up: true, since_ms: Some(at) };
        assert_eq!(crash_guard_wait(Some(down), at), Duration::ZERO, "nothing runs: nothing to guard");
        assert_eq!(crash_guard_wait(None, at), Duration::ZERO);
    }
}
