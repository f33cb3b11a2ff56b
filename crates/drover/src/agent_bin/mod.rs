//! The agents this controller pushes, embedded at build time (see
//! `build.rs`), keyed by the machine each runs on, and each one's content
//! hash, which names it on hosts.
//!
//! The bootstrap asks every host for its architecture before anything is
//! uploaded and picks the agent for it from [`agents`] (#30); a host whose
//! machine has no entry is refused. Today the table has one entry, the agent
//! built with this controller, keyed by the machine of the target it was
//! built for (`build.rs` says which: the target triple of its nested build,
//! or the ELF header of a `DROVER_AGENT_BIN`); a build that carries several
//! agents adds entries here, and every caller that picks by host already
//! looks them up by [`Arch`].

use std::sync::{LazyLock, OnceLock};

use drover_proto::Hash;

mod arch;

pub use arch::{list as arch_list, Arch};

/// One agent binary and the machine it runs on.
#[derive(Debug)]
pub struct Agent {
    /// The machine the binary was built for.
    pub arch: Arch,
    bytes: &'static [u8],
    gzipped: &'static [u8],
    hash: OnceLock<Hash>,
    sha256: OnceLock<String>,
}

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/drover-agent"));
static EMBEDDED_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/drover-agent.gz"));

/// The table. Hashes are computed on first use only: most commands never
/// look at an agent.
static AGENTS: LazyLock<[Agent; 1]> = LazyLock::new(|| {
    [Agent {
        arch: Arch::from_uname(env!("DROVER_AGENT_ARCH")),
        bytes: EMBEDDED,
        gzipped: EMBEDDED_GZ,
        hash: OnceLock::new(),
        sha256: OnceLock::new(),
    }]
});

/// Every agent this controller carries, one per architecture.
pub fn agents() -> &'static [Agent] {
    &AGENTS[..]
}

/// The agent for hosts of `arch`, if this controller carries one.
pub fn for_arch(arch: &Arch) -> Option<&'static Agent> {
    agents().iter().find(|a| &a.arch == arch)
}

/// The architectures this controller has agents for (for messages).
pub fn carried() -> Vec<Arch> {
    agents().iter().map(|a| a.arch.clone()).collect()
}

/// The agent built with this controller, for its build's agent target.
/// The callers that do not pick per host yet use it: bundles (one agent per
/// bundle) and the reboot hook's check. With one entry it is every host's.
pub fn embedded() -> &'static Agent {
    &agents()[0]
}

impl Agent {
    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }

    /// The agent, gzip-compressed (at build time): what an upload sends to
    /// a host that has `gzip`.
    pub fn gzipped(&self) -> &'static [u8] {
        self.gzipped
    }

    pub fn hash(&self) -> Hash {
        *self.hash.get_or_init(|| Hash(*blake3::hash(self.bytes).as_bytes()))
    }

    /// The agent's sha256, hex: what hosts check it against before running
    /// it as root. sha256 rather than blake3 because every host has
    /// coreutils' `sha256sum`, and the check must be done by something other
    /// than the binary being checked (a swapped binary would lie about
    /// itself).
    pub fn sha256_hex(&self) -> &str {
        use sha2::Digest;
        self.sha256.get_or_init(|| sha2::Sha256::digest(self.bytes).iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Write the agent to `path` (for the local transport and `drover-agent`
    /// installs from a bundle), if not already there with the right content.
    /// Safe for several processes at once: each writes its own temporary
    /// file and renames it into place, and the content is the same.
    pub fn materialize(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::read(path).map(|b| b == self.bytes).unwrap_or(false) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // One temporary name per call: workers of one run materialize the
        // same path at once, and a shared name let one rename the other's
        // file away mid-write (the loser's rename then failed with ENOENT).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
        std::fs::write(&tmp, self.bytes)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(tmp, path)
    }
}

/// One entry of the table is equal only to itself.
impl PartialEq for Agent {
    fn eq(&self, other: &Agent) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Agent {}

/// [`embedded`]'s bytes.
pub fn bytes() -> &'static [u8] {
    embedded().bytes()
}

/// [`embedded`]'s hash.
pub fn hash() -> Hash {
    embedded().hash()
}

/// [`embedded`]'s sha256, hex.
pub fn sha256_hex() -> &'static str {
    embedded().sha256_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many at once (as the workers of one run do) all succeed, and the
    /// file is the agent, with no temporary file left behind.
    #[test]
    fn materializing_the_same_path_at_once_never_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".drover-agent");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || embedded().materialize(&p))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert!(std::fs::read(&path).unwrap() == super::bytes());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    /// Each entry of the table is a 64-bit little-endian ELF executable for
    /// the machine it is filed under (its header's `e_machine`), one entry
    /// per machine, none for a machine drover does not know: a host is
    /// never given an agent it cannot run.
    #[test]
    fn every_agent_is_filed_under_the_machine_its_elf_header_names() {
        let mut seen = Vec::new();
        for a in agents() {
            let b = a.bytes();
            assert_eq!(&b[..6], b"\x7fELF\x02\x01", "{}: a 64-bit little-endian ELF", a.arch);
            let machine = u16::from_le_bytes([b[18], b[19]]);
            assert_eq!(
                Some(machine),
                a.arch.elf_machine(),
                "the agent filed under {} is for e_machine {machine}",
                a.arch
            );
            assert!(!seen.contains(&a.arch), "two agents for {}", a.arch);
            seen.push(a.arch.clone());
            assert!(std::ptr::eq(for_arch(&a.arch).unwrap(), a));
        }
        assert_eq!(carried(), seen);
        assert!(for_arch(&Arch::Other("armv7l".into())).is_none());
    }
}
