//! The bundle file layout. All integers are little-endian.
//!
//! ```text
//! 0              "DROVERB\x03"                     magic and format version
//! 8              blob data: each blob's chunks back to back; a chunk is one
//!                zstd frame of CHUNK_SIZE (1 MiB) uncompressed bytes, the
//!                last one of a blob shorter
//! index_off      the index: postcard(Index)
//! sig_off        once signed: postcard(Signatures), the minisign signatures
//!                of the index and of each host statement (`statement`)
//! len - 72       trailer: "DROVERT\x01", index_off, index_len, sig_off,
//!                sig_len (u64 each), blake3(index) (32 bytes)
//! ```
//!
//! Why this shape: a builder streams blobs out as it reads them and writes the
//! index last, so nothing is held in memory; a reader finds the index at a
//! known place (the trailer, at the end) and seeks straight to any blob or
//! chunk. Chunks are independent zstd frames of the protocol's chunk size, so
//! the controller sends them to agents as they are, without recompressing.
//! The host statement signatures let a host check what a controller sends
//! it from a bundle (its own entry only) without having the whole file (see
//! `docs/bundle.md`).

use drover_proto::{Hash, Manifest};
use serde::{Deserialize, Serialize};

/// Format 3: one agent per machine (`Index::agents`, each naming its
/// machine). Format 2 added sealed (per-host encrypted) secret content.
pub const MAGIC: &[u8; 8] = b"DROVERB\x03";
/// Older formats, refused with a message that says to build again: their
/// index does not decode as format 3, and a format 2 bundle's one agent does
/// not say which machine it is for (`BundleError::OldFormat`).
pub const OLD_MAGICS: [(&[u8; 8], u8, &str); 2] =
    [(b"DROVERB\x01", 1, "before secrets could be bundled"), (b"DROVERB\x02", 2, "one agent, for one machine")];
pub const TRAILER_MAGIC: &[u8; 8] = b"DROVERT\x01";
pub const TRAILER_LEN: u64 = 72;
/// Uncompressed bytes per chunk: the protocol's, so chunks go out as stored.
pub const CHUNK_SIZE: u64 = drover_proto::CHUNK_SIZE as u64;
/// Refuse indexes larger than this (a damaged trailer must not make a reader
/// allocate gigabytes).
pub const MAX_INDEX: u64 = 512 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    pub created_ms: u64,
    /// Project name (`drover.toml`).
    pub project: String,
    /// The project's revision at build time (git commit, or a tree hash).
    pub revision: String,
    /// Incremental bundles: the bundle whose blobs this one leaves out.
    pub base: Option<BaseRef>,
    /// The static agent binaries, one per machine, each stored as a blob;
    /// sorted by machine name, unique. A host installing the bundle picks
    /// the one for its `uname -m` ([`Index::agent_for`]).
    pub agents: Vec<AgentRef>,
    pub settings: Settings,
    /// Sorted by name.
    pub hosts: Vec<HostEntry>,
    /// Sorted by hash, unique.
    pub blobs: Vec<BlobEntry>,
    /// Blobs the manifests reference that are not in this bundle because the
    /// base has them (sorted). A host must already hold them.
    pub external: Vec<Hash>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseRef {
    pub revision: String,
    /// blake3 of the base bundle's index: identifies it exactly.
    pub index: Hash,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRef {
    /// The machine it runs on, as Linux's `uname -m` names it (`x86_64`,
    /// `aarch64`).
    pub arch: String,
    pub hash: Hash,
    pub version: String,
}

/// Project settings an air-gapped controller needs without the project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub confirm_timeout_ms: u64,
    pub parallel: u64,
    pub connect_timeout_ms: u64,
}

/// One host: how to reach it (no secrets: key paths, never passwords) and
/// its compiled desired state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key: Option<String>,
    pub host_keys: Vec<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// The generation number templates were rendered with.
    pub generation: u64,
    /// Where the facts used to compile came from: `cache` (the state store,
    /// from an earlier run) or `placeholder`.
    pub facts: String,
    pub manifest: Manifest,
    /// The host key its sealed content is encrypted to (`ssh-ed25519 AAAA…`,
    /// no comment): one of `host_keys`. `None` when nothing is sealed.
    pub recipient: Option<String>,
    /// Paths whose content is a secret, sorted by path: their blobs are in
    /// the bundle only encrypted to `recipient` (see [`crate::seal`]).
    pub sealed: Vec<SealedEntry>,
    /// `seal(postcard(Vec<SealedClear>))`: the clear hashes (and template
    /// sources) of the sealed files, for the host only. In the manifest above
    /// a sealed file's hash is its ciphertext's and its source is `None`: a
    /// hash of a short secret could be confirmed by guessing.
    pub sealed_clear: Vec<u8>,
}

impl HostEntry {
    /// A root-login host on port 22 with no keys, roles, secrets or desired
    /// state yet: what an index is built up from (and every test's fixture).
    pub fn bare(name: &str, address: &str) -> HostEntry {
        HostEntry {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: "root".into(),
            key: None,
            host_keys: vec![],
            roles: vec![],
            groups: vec![],
            generation: 1,
            facts: "placeholder".into(),
            manifest: drover_proto::Manifest::default(),
            recipient: None,
            sealed: vec![],
            sealed_clear: vec![],
        }
    }
}

/// One secret-bearing file of a host, as the bundle shows it: no clear
/// hash. The ciphertext is an age file for the host's key, stored as an
/// ordinary blob (so the signatures cover it like any other blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEntry {
    pub path: String,
    /// The secrets the content holds (`secrets.NAME`, or the `*.age` file).
    pub names: Vec<String>,
    /// blake3 of the ciphertext: a blob of this bundle, and the manifest
    /// entry's hash until the host puts the clear one in.
    pub cipher: Hash,
    /// Length of the ciphertext (what a host receiving it expects).
    pub cipher_size: u64,
}

/// What only the host learns about a sealed file (inside `sealed_clear`):
/// the clear content's blake3, which the manifest entry gets back on the
/// host, and the entry's template source hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedClear {
    pub path: String,
    pub hash: Hash,
    pub source: Option<Hash>,
}

impl HostEntry {
    /// A sealed entry must name a file of the manifest whose (stand-in) hash
    /// is its ciphertext's, and say which key it is sealed to.
    pub fn validate_sealed(&self) -> Result<(), String> {
        if !self.sealed.is_empty() && (self.recipient.is_none() || self.sealed_clear.is_empty()) {
            return Err(format!("host {}: sealed content without a recipient key", self.name));
        }
        for s in &self.sealed {
            match self.manifest.entry(&s.path).map(|e| (&e.kind, e.source)) {
                Some((drover_proto::EntryKind::File { hash, .. }, None)) if *hash == s.cipher => {}
                _ => return Err(format!("host {}: sealed {} does not match its manifest entry", self.name, s.path)),
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobEntry {
    pub hash: Hash,
    /// Uncompressed size.
    pub size: u64,
    /// File offset of the first chunk.
    pub offset: u64,
    /// Compressed length of each chunk.
    pub chunks: Vec<u32>,
}

impl BlobEntry {
    pub fn packed_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(*c)).sum()
    }
}

impl Index {
    pub fn blob(&self, h: &Hash) -> Option<&BlobEntry> {
        self.blobs.binary_search_by(|b| b.hash.cmp(h)).ok().map(|i| &self.blobs[i])
    }

    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The agent for a host whose `uname -m` says `machine` (`arm64` is
    /// `aarch64`'s other name, `amd64` `x86_64`'s).
    pub fn agent_for(&self, machine: &str) -> Option<&AgentRef> {
        let m = match machine.trim() {
            "arm64" => "aarch64",
            "amd64" => "x86_64",
            m => m,
        };
        self.agents.iter().find(|a| a.arch == m)
    }

    /// The machines this bundle carries agents for, for messages:
    /// `aarch64, x86_64`, or `none`.
    pub fn agent_machines(&self) -> String {
        match self.agents.len() {
            0 => "none".into(),
            _ => self.agents.iter().map(|a| a.arch.as_str()).collect::<Vec<_>>().join(", "),
        }
    }

    /// Structural checks a reader does before trusting offsets and manifests:
    /// sorted unique blobs, chunk counts that match sizes, blobs inside the
    /// data area, manifests with normalised paths (no `..`).
    pub fn validate(&self, data_end: u64) -> Result<(), String> {
        for w in self.blobs.windows(2) {
            if w[0].hash >= w[1].hash {
                return Err("blob list not sorted".into());
            }
        }
        for b in &self.blobs {
            let want = b.size.div_ceil(CHUNK_SIZE);
            if b.chunks.len() as u64 != want {
                return Err(format!("blob {} has {} chunks for {} bytes", b.hash.short(), b.chunks.len(), b.size));
            }
            let end = b.offset.checked_add(b.packed_len()).ok_or("blob offset overflow")?;
            if b.offset < MAGIC.len() as u64 || end > data_end {
                return Err(format!("blob {} lies outside the data area", b.hash.short()));
            }
        }
        for h in &self.hosts {
            h.manifest.validate().map_err(|e| format!("host {}: {e}", h.name))?;
            h.validate_sealed()?;
            for s in &h.sealed {
                match self.blob(&s.cipher) {
                    Some(b) if b.size == s.cipher_size => {}
                    _ => return Err(format!("host {}: the sealed content of {} is not in the bundle", h.name, s.path)),
                }
            }
        }
        for w in self.agents.windows(2) {
            if w[0].arch >= w[1].arch {
                return Err("agent list not sorted by machine, or two agents for one machine".into());
            }
        }
        for a in &self.agents {
            if a.arch.is_empty() || !a.arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("agent {} names no machine ({:?})", a.hash.short(), a.arch));
            }
        }
        Ok(())
    }
}

/// Where the index and its signature are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub index_off: u64,
    pub index_len: u64,
    pub sig_off: u64,
    pub sig_len: u64,
    pub index_hash: Hash,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[..8].copy_from_slice(TRAILER_MAGIC);
        for (i, v) in [self.index_off, self.index_len, self.sig_off, self.sig_len].iter().enumerate() {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        out[40..].copy_from_slice(&self.index_hash.0);
        out
    }

    /// Parse and check against the file length: `None` if it is not a
    /// trailer or points outside the file.
    pub fn decode(b: &[u8], file_len: u64) -> Option<Trailer> {
        if b.len() != TRAILER_LEN as usize || &b[..8] != TRAILER_MAGIC {
            return None;
        }
        let n = |i: usize| u64::from_le_bytes(b[8 + i * 8..16 + i * 8].try_into().unwrap_or([0; 8]));
        let t = Trailer {
            index_off: n(0),
            index_len: n(1),
            sig_off: n(2),
            sig_len: n(3),
            index_hash: Hash(b[40..72].try_into().ok()?),
        };
        let index_end = t.index_off.checked_add(t.index_len)?;
        let sig_end = t.sig_off.checked_add(t.sig_len)?;
        let body_end = file_len.checked_sub(TRAILER_LEN)?;
        let sig_ok = if t.sig_len == 0 { index_end == body_end } else { t.sig_off == index_end && sig_end == body_end };
        (t.index_off >= MAGIC.len() as u64 && t.index_len <= MAX_INDEX && sig_ok).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_and_checks_bounds() {
        let t = Trailer { index_off: 100, index_len: 50, sig_off: 150, sig_len: 0, index_hash: Hash([7; 32]) };
        let b = t.encode();
        // index ends at 150, trailer follows: file is 150 + 72 long.
        assert_eq!(Trailer::decode(&b, 150 + TRAILER_LEN), Some(t));
        assert_eq!(Trailer::decode(&b, 151 + TRAILER_LEN), None, "length mismatch accepted");
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Trailer::decode(&bad, 150 + TRAILER_LEN), None);
        let signed = Trailer { sig_len: 10, ..t };
        assert_eq!(Trailer::decode(&signed.encode(), 160 + TRAILER_LEN), Some(signed));
    }
}
