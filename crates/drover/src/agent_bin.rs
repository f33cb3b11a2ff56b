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
pub fn materialize(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).map(|b| b == AGENT).unwrap_or(false) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, AGENT)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(tmp, path)
}
