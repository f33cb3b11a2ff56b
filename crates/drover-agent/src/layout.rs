//! Where the agent keeps things. All paths derive from one target root so the
//! same code serves a real host (`/`) and a simulated one (any directory).

use std::path::{Path, PathBuf};

use drover_proto::Hash;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    state: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        let root = root.into();
        let state = root.join("var/lib/drover");
        Layout { root, state }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A manifest path (absolute, validated) under the target root.
    pub fn target(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }
    pub fn blobs(&self) -> PathBuf {
        self.state.join("blobs")
    }
    pub fn blob(&self, h: &Hash) -> PathBuf {
        self.state.join("blobs").join(h.to_hex())
    }
    pub fn partial(&self, h: &Hash) -> PathBuf {
        self.state.join("partial").join(h.to_hex())
    }
    pub fn partial_dir(&self) -> PathBuf {
        self.state.join("partial")
    }
    pub fn gens(&self) -> PathBuf {
        self.state.join("gens")
    }
    pub fn manifest(&self, generation: u64) -> PathBuf {
        self.state.join("gens").join(format!("{generation}.manifest"))
    }
    pub fn state_file(&self) -> PathBuf {
        self.state.join("state.json")
    }
    pub fn journal(&self) -> PathBuf {
        self.state.join("journal.json")
    }
    pub fn undo(&self) -> PathBuf {
        self.state.join("undo.json")
    }
    pub fn pending(&self) -> PathBuf {
        self.state.join("pending.json")
    }
    /// What became of generations never confirmed (`engine::fates`).
    pub fn unconfirmed(&self) -> PathBuf {
        self.state.join("unconfirmed.json")
    }
    pub fn statcache(&self) -> PathBuf {
        self.state.join("statcache.json")
    }
    pub fn backup(&self, generation: u64, path: &str) -> PathBuf {
        self.state.join("backup").join(generation.to_string()).join(path.trim_start_matches('/'))
    }
    /// What the detached watchdog's last revert did (see [`crate::engine::watchdog`]).
    pub fn watchdog_report(&self) -> PathBuf {
        self.state.join("watchdog-report.json")
    }
    /// The script the boot-time hook runs (see [`crate::boot`]).
    pub fn boot_hook(&self) -> PathBuf {
        self.state.join("boot-hook.sh")
    }
    /// How many boots the boot-time hook has seen (see [`crate::boot`]).
    pub fn boot_record(&self) -> PathBuf {
        self.state.join("boot.json")
    }
    /// The generation the watchdog rebooted after reverting, and why: it
    /// does so once per generation (see [`crate::boot`]).
    pub fn reboot_guard(&self) -> PathBuf {
        self.state.join("reboot-guard.json")
    }
    /// Present while the host is drained, holding the reason (see
    /// [`crate::ops`]).
    pub fn drain_mark(&self) -> PathBuf {
        self.state.join("drained")
    }
    pub fn lock(&self) -> PathBuf {
        self.state.join("lock")
    }
    /// Present once the state directory has been made private (see
    /// [`crate::fsops::make_private`]); its absence on an older installation
    /// triggers the repair once.
    pub fn private_marker(&self) -> PathBuf {
        self.state.join("private-v1")
    }
    /// Fault-injection point for tests; see [`crate::hooks`].
    pub fn hook_file(&self) -> PathBuf {
        self.state.join("test-hook")
    }
}
