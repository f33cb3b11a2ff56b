//! Starting another copy of this agent (the magic-rollback watchdog, the
//! relay server) as a detached process.
//!
//! The copy is started from `/proc/self/exe`, not from a path: that is the
//! very file this process runs, which the controller's bootstrap checked
//! (owner, mode and sha256, as root) immediately before executing it from
//! the root-owned `/var/lib/drover/agent/`. No path is looked up again, so
//! nothing renamed or written since can be what runs as root; and it keeps
//! working when a repair has since replaced the file (the running inode
//! stays). `argv[0]` is the agent's path, so `ps` still names it.

use std::os::unix::process::CommandExt;
use std::process::Command;

pub fn command() -> Command {
    let mut c = Command::new("/proc/self/exe");
    if let Ok(path) = std::env::current_exe() {
        c.arg0(path);
    }
    c
}
