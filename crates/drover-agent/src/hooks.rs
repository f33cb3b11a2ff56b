//! Fault-injection points for end-to-end tests.
//!
//! "Kill the agent at any point of apply" must be testable deterministically.
//! When `/var/lib/drover/test-hook` exists and names a point (e.g.
//! `mid-swap`), the agent writes `test-hook.reached` and sleeps there for a
//! minute, giving the test time to SIGKILL it, or until the test creates
//! `test-hook.continue` (removed as the agent goes on): a test can then
//! hold a session at one point, act meanwhile, and let it go.
//!
//! Compiled in only with the `test-hooks` feature (`scripts/test` turns it
//! on, for the agent and for the agent the controller embeds): the agent a
//! release build ships has empty hook points and looks at no such file.

use crate::layout::Layout;

/// Points in a transition where a test may stop the agent.
/// `before-confirm`: a `Confirm` received, before the lock is taken (a
/// controller's confirmation held while another controller acts).
pub const POINTS: &[&str] = &[
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

#[cfg(feature = "test-hooks")]
pub fn point(layout: &Layout, name: &str) {
    let file = layout.hook_file();
    let Ok(wanted) = std::fs::read_to_string(&file) else { return };
    if wanted.trim() != name {
        return;
    }
    let _ = std::fs::write(file.with_extension("reached"), name);
    let go = file.with_extension("continue");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < until {
        if std::fs::remove_file(&go).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
