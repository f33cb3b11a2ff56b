//! Fault-injection points for end-to-end tests.
//!
//! "Kill the agent at any point of apply" must be testable deterministically.
//! When `/var/lib/drover/test-hook` exists and names a point (e.g.
//! `mid-swap`), the agent writes `test-hook.reached` and sleeps there for a
//! minute, giving the test time to SIGKILL it, or until the test creates
//! `test-hook.continue` (removed as the agent goes on): a test can then
//! hold a session at one point, act meanwhile, and let it go. Written
//! `<point> wait`, it waits there instead until the test creates
//! `test-hook.go` (the test changes the host meanwhile: fills a
//! filesystem, remounts it read-only).
//!
//! "A write fails at any point of a transition" likewise: when
//! `/var/lib/drover/test-fault` says `<n> <ERRNO>` (`EIO`, `EROFS`,
//! `ENOSPC`), the `n`-th write [`fault`] guards after [`arm`] fails with that
//! errno (every later one too with ` persist` after it), and
//! `test-fault.reached` names the write. A test counts `n` up until no write
//! is left to fail.
//!
//! Compiled in only with the `test-hooks` feature (`scripts/test` turns it
//! on, for the agent and for the agent the controller embeds): the agent a
//! release build ships has empty hook points and looks at no such file.

use crate::layout::Layout;

/// Points in a transition where a test may stop the agent.
/// `before-confirm`: a `Confirm` received, before the lock is taken (a
/// controller's confirmation held while another controller acts).
pub const POINTS: &[&str] = &[
    "after-check",
    "after-stage",
    "mid-swap",
    "after-commit",
    "before-health",
    "awaiting-confirm",
    "dpkg-unpacked",
    "before-confirm",
];

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn point(_layout: &Layout, _name: &str) {}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn arm(_layout: &Layout) {}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn disarm() {}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn fault(_write: &str) -> std::io::Result<()> {
    Ok(())
}

/// The feature set this agent was built with, as `--version` prints it.
/// The controller's build (crates/drover/build.rs) finds this text in every
/// agent it embeds and refuses an agent of the other feature set: a release
/// must never carry fault-injection points, and a test build needs them on
/// every host its tests inject faults on. Only one of the two strings is in
/// any binary.
#[cfg(feature = "test-hooks")]
pub const FEATURES: &str = "drover-agent-features=test-hooks";
#[cfg(not(feature = "test-hooks"))]
pub const FEATURES: &str = "drover-agent-features=release";

#[cfg(feature = "test-hooks")]
pub fn point(layout: &Layout, name: &str) {
    let file = layout.hook_file();
    let Ok(wanted) = std::fs::read_to_string(&file) else { return };
    let mut words = wanted.split_whitespace();
    if words.next() != Some(name) {
        return;
    }
    let _ = std::fs::write(file.with_extension("reached"), name);
    if words.next() == Some("wait") {
        let go = file.with_extension("go");
        let start = std::time::Instant::now();
        while !go.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        return;
    }
    let go = file.with_extension("continue");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < until {
        if std::fs::remove_file(&go).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(feature = "test-hooks")]
mod faults {
    use std::sync::Mutex;

    /// The armed fault: writes left before it, its errno, whether it stays,
    /// and where to say which write it hit.
    pub(super) struct Armed {
        pub left: u64,
        pub errno: i32,
        pub persist: bool,
        pub reached: std::path::PathBuf,
    }

    pub(super) static ARMED: Mutex<Option<Armed>> = Mutex::new(None);
}

/// Read `test-fault`, if any, and count writes from here.
#[cfg(feature = "test-hooks")]
pub fn arm(layout: &Layout) {
    let file = layout.state_dir().join("test-fault");
    let Ok(text) = std::fs::read_to_string(&file) else { return };
    let mut w = text.split_whitespace();
    let n: u64 = w.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let errno = match w.next() {
        Some("EROFS") => libc::EROFS,
        Some("ENOSPC") => libc::ENOSPC,
        _ => libc::EIO,
    };
    let persist = w.next() == Some("persist");
    let armed = faults::Armed { left: n, errno, persist, reached: file.with_extension("reached") };
    *faults::ARMED.lock().unwrap_or_else(|e| e.into_inner()) = Some(armed);
}

#[cfg(feature = "test-hooks")]
pub fn disarm() {
    *faults::ARMED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Before a write: fail it if the armed fault says this is the one.
#[cfg(feature = "test-hooks")]
pub fn fault(write: &str) -> std::io::Result<()> {
    let mut armed = faults::ARMED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(a) = armed.as_mut() else { return Ok(()) };
    a.left = a.left.saturating_sub(1);
    if a.left > 0 {
        return Ok(());
    }
    let err = std::io::Error::from_raw_os_error(a.errno);
    if !a.reached.exists() {
        let _ = std::fs::write(&a.reached, write);
    }
    if !a.persist {
        *armed = None;
    }
    Err(err)
}
