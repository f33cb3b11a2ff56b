//! The agents this controller pushes, embedded at build time (see
//! `build.rs`), keyed by the machine each runs on, and each one's content
//! hash, which names it on hosts.
//!
//! The bootstrap asks every host for its architecture before anything is
//! uploaded and picks the agent for it from [`agents`] (#30); a host whose
//! machine has no entry is refused. The table has one entry per machine:
//! the agent built with this controller (x86_64, static glibc) and, when the
//! build was given `DROVER_AGENTS_DIR` (see `build.rs` and
//! `scripts/build-agents`), the static musl agents built for x86_64 and
//! aarch64, a glibc agent winning where there is one (measured faster),
//! else the smallest (see `select::preferred_per_arch`). Every entry's
//! machine is its ELF header's, checked at build time and by the tests.

use std::sync::{LazyLock, OnceLock};

use drover_proto::Hash;

mod arch;
#[cfg(test)]
mod select;

pub use arch::{list as arch_list, Arch};

/// One agent binary and the machine it runs on.
#[derive(Debug)]
pub struct Agent {
    /// The machine the binary was built for.
    pub arch: Arch,
    /// The Rust target it was built for (`aarch64-unknown-linux-musl`), or
    /// `DROVER_AGENT_BIN=<path>` for a binary given to the build.
    pub target: &'static str,
    bytes: &'static [u8],
    gzipped: &'static [u8],
    hash: OnceLock<Hash>,
    sha256: OnceLock<String>,
}

/// An agent as `build.rs` writes it into `agents.rs`.
struct Embedded {
    arch: &'static str,
    target: &'static str,
    bytes: &'static [u8],
    gzipped: &'static [u8],
}

/// What the build embedded: one entry per machine, sorted by its name.
static EMBEDDED: &[Embedded] = include!(concat!(env!("OUT_DIR"), "/agents.rs"));

/// The table. Hashes are computed on first use only: most commands never
/// look at an agent.
static AGENTS: LazyLock<Vec<Agent>> = LazyLock::new(|| {
    EMBEDDED
        .iter()
        .map(|e| Agent {
            arch: Arch::from_uname(e.arch),
            target: e.target,
            bytes: e.bytes,
            gzipped: e.gzipped,
            hash: OnceLock::new(),
            sha256: OnceLock::new(),
        })
        .collect()
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

/// The agent for this controller's own machine: what simulated hosts run
/// and what the lab's hosts (network namespaces on this machine) get.
/// Callers that talk to a real host pick by its machine ([`for_arch`]).
pub fn native() -> &'static Agent {
    for_arch(&Arch::controller())
        .unwrap_or_else(|| panic!("this drover carries no agent for its own machine ({})", Arch::controller()))
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

/// [`native`]'s bytes.
pub fn bytes() -> &'static [u8] {
    native().bytes()
}

/// [`native`]'s hash.
pub fn hash() -> Hash {
    native().hash()
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
                std::thread::spawn(move || native().materialize(&p))
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
        assert!(std::ptr::eq(native(), for_arch(&Arch::controller()).unwrap()));
    }

    /// The feature set of this build's agents: a test build's agents all
    /// have their fault-injection points, a release's none.
    const FEATURES: &str = if cfg!(feature = "agent-test-hooks") { "test-hooks" } else { "release" };
    const OTHER: &str = if cfg!(feature = "agent-test-hooks") { "release" } else { "test-hooks" };

    /// Every embedded agent was built with this build's feature set and
    /// not the other (build.rs refuses any other; this checks the table it
    /// made).
    #[test]
    fn every_agent_was_built_with_this_builds_feature_set() {
        for a in agents() {
            assert!(select::built_with(a.bytes(), FEATURES), "{} ({}) is not a {FEATURES} agent", a.arch, a.target);
            assert!(!select::built_with(a.bytes(), OTHER), "{} ({}) is a {OTHER} agent", a.arch, a.target);
        }
    }

    /// A build given `DROVER_AGENTS_DIR` carries an agent for every machine
    /// of that directory's feature set: the native glibc one for x86_64
    /// (measured faster than musl), the directory's for the others, and
    /// its gzipped copy is that agent. Without the directory, only the
    /// native agent.
    #[test]
    fn a_build_with_cross_agents_carries_one_for_each_machine_glibc_where_there_is_one() {
        use std::io::Read;
        for a in agents() {
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(a.gzipped()).read_to_end(&mut unzipped).unwrap();
            assert!(unzipped == a.bytes(), "{}: the gzipped agent is another", a.arch);
        }
        let Some(dir) = option_env!("DROVER_AGENTS_DIR").filter(|d| !d.is_empty()) else {
            assert_eq!(carried(), [Arch::X86_64], "without DROVER_AGENTS_DIR only the native agent");
            return;
        };
        let dir = std::path::Path::new(dir).join(FEATURES);
        let mut machines = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(triple) = name.strip_prefix("drover-agent-").filter(|t| !t.contains('.')) else { continue };
            let bytes = std::fs::read(&path).unwrap();
            let arch = Arch::from_target(triple);
            let ours = for_arch(&arch).unwrap_or_else(|| panic!("{} is not carried", path.display()));
            if arch == Arch::X86_64 {
                assert!(ours.target.contains("-gnu"), "x86_64: the musl agent {} won over glibc", path.display());
            } else {
                assert!(ours.bytes() == bytes.as_slice(), "{arch}: not the agent of {}", path.display());
            }
            machines += 1;
        }
        assert!(machines > 0, "{}: no agents", dir.display());
        assert!(for_arch(&Arch::Aarch64).is_some(), "a build with cross agents carries an aarch64 one");
    }
}
