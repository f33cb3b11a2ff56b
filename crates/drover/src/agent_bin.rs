//! The agent binary this controller pushes, embedded at build time (see
//! `build.rs`), and its content hash, which names it on hosts.

use std::sync::OnceLock;

use drover_proto::Hash;

static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/drover-agent"));

pub fn bytes() -> &'static [u8] {
    AGENT
}

/// The agent, gzip-compressed (at build time): what an upload sends to a
/// host that has `gzip`.
pub fn gzipped() -> &'static [u8] {
    static GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/drover-agent.gz"));
    GZ
}

pub fn hash() -> Hash {
    static H: OnceLock<Hash> = OnceLock::new();
    *H.get_or_init(|| Hash(*blake3::hash(AGENT).as_bytes()))
}

/// The agent's sha256, hex: what hosts check it against before running it as
/// root. sha256 rather than blake3 because every host has coreutils'
/// `sha256sum`, and the check must be done by something other than the
/// binary being checked (a swapped binary would lie about itself).
pub fn sha256_hex() -> &'static str {
    use sha2::Digest;
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| sha2::Sha256::digest(AGENT).iter().map(|b| format!("{b:02x}")).collect())
}

/// Write the agent to `path` (for the local transport and `drover-agent`
/// installs from a bundle), if not already there with the right content.
/// Safe for several processes at once: each writes its own temporary file
/// and renames it into place, and the content is the same.
pub fn materialize(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).map(|b| b == AGENT).unwrap_or(false) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // One temporary name per call: workers of one run materialize the
    // same path at once, and a shared name let one rename the other's file
    // away mid-write (the loser's rename then failed with ENOENT).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, AGENT)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    /// Many at once (as the workers of one run do) all succeed, and the
    /// file is the agent, with no temporary file left behind.
    #[test]
    fn materializing_the_same_path_at_once_never_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".drover-agent");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || super::materialize(&p))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert!(std::fs::read(&path).unwrap() == super::bytes());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
