//! Reading a bundle: the trailer and index, then blobs by seeking.
//!
//! [`Bundle::open_verified`] is the trusted path: one sequential pass over
//! the whole file feeds the signature check and keeps the tail (index and
//! trailer) in memory; the index is then parsed from exactly the bytes that
//! were verified, not read again from a file someone could swap meanwhile.
//! Blobs are read later by offset, and each is checked against its blake3
//! from that index as it is extracted.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use drover_proto::Hash;

use crate::format::{BlobEntry, Index, Trailer, CHUNK_SIZE, MAGIC, OLD_MAGICS, TRAILER_LEN};
use crate::statement::{HostStatement, Signatures};
use crate::verify::{self, PublicKey};
use crate::{BundleError, Result};

pub struct Bundle {
    file: File,
    path: PathBuf,
    len: u64,
    pub index: Index,
    index_bytes: Vec<u8>,
    sigs: Option<Signatures>,
    trailer: Trailer,
}

impl Bundle {
    /// Open without a signature check (inspection, signing): magic, trailer,
    /// index hash and structure are still checked.
    pub fn open(path: &Path) -> Result<Bundle> {
        let (file, len) = open_file(path)?;
        let t = read_trailer(&file, len, path)?.ok_or_else(|| BundleError::Truncated(path.display().to_string()))?;
        let mut tail = vec![0u8; usize::try_from(len - t.index_off).unwrap_or(0)];
        file.read_exact_at(&mut tail, t.index_off).map_err(|e| BundleError::io(path, e))?;
        let mut magic = [0u8; 8];
        file.read_exact_at(&mut magic, 0).map_err(|e| BundleError::io(path, e))?;
        check_magic(&magic, path)?;
        Bundle::from_tail(file, path, len, t, tail)
    }

    /// Open and check the detached minisign signature `sig` (the whole file,
    /// prehashed) against `key`. Reads the file once, sequentially.
    pub fn open_verified(path: &Path, sig: &Path, key: &PublicKey) -> Result<Bundle> {
        let sig_text = match std::fs::read_to_string(sig) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::Unsigned(path.display().to_string()))
            }
            Err(e) => return Err(BundleError::io(sig, e)),
        };
        let (mut file, len) = open_file(path)?;
        let pre = read_trailer(&file, len, path)?;
        let signature = verify::parse_signature(&sig_text, path, key)?;
        let mut v = verify::stream(key, &signature, path)?;
        let keep_from = pre.map_or(u64::MAX, |t| t.index_off);
        let mut tail = Vec::new();
        let mut head = Vec::with_capacity(8);
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| BundleError::io(path, e))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            v.update(chunk);
            if head.len() < 8 {
                head.extend_from_slice(&chunk[..chunk.len().min(8 - head.len())]);
            }
            let end = pos + n as u64;
            if end > keep_from {
                let from = usize::try_from(keep_from.saturating_sub(pos)).unwrap_or(0);
                tail.extend_from_slice(&chunk[from..]);
            }
            pos = end;
        }
        verify::finish(v, path, key)?;
        let (Some(t), true) = (pre, pos == len) else {
            return Err(BundleError::Truncated(path.display().to_string()));
        };
        check_magic(&head, path)?;
        Bundle::from_tail(file, path, len, t, tail)
    }

    /// Parse the index from `tail` (index, signature, trailer: the bytes from
    /// `t.index_off` to the end) and check it.
    fn from_tail(file: File, path: &Path, len: u64, t: Trailer, tail: Vec<u8>) -> Result<Bundle> {
        let corrupt = |what: String| BundleError::Corrupt { path: path.display().to_string(), what };
        let tl = usize::try_from(TRAILER_LEN).unwrap_or(72);
        if tail.len() < tl || Trailer::decode(&tail[tail.len() - tl..], len) != Some(t) {
            return Err(BundleError::Truncated(path.display().to_string()));
        }
        let il = usize::try_from(t.index_len).map_err(|_| corrupt("index too large".into()))?;
        let sl = usize::try_from(t.sig_len).map_err(|_| corrupt("signature too large".into()))?;
        let index_bytes = tail[..il].to_vec();
        if Hash(*blake3::hash(&index_bytes).as_bytes()) != t.index_hash {
            return Err(corrupt("the index does not match its hash".into()));
        }
        let index: Index = postcard::from_bytes(&index_bytes).map_err(|e| corrupt(format!("index: {e}")))?;
        index.validate(t.index_off).map_err(|e| corrupt(format!("index: {e}")))?;
        let sigs = match sl {
            0 => None,
            _ => Some(
                Signatures::decode(&tail[il..il + sl]).ok_or_else(|| corrupt("unreadable signature area".into()))?,
            ),
        };
        Ok(Bundle { file, path: path.to_path_buf(), len, index, index_bytes, sigs, trailer: t })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.index.blobs.is_empty()
    }

    /// The index exactly as stored (what the embedded index signature signs).
    pub fn index_bytes(&self) -> &[u8] {
        &self.index_bytes
    }

    /// The minisign signature of the index bytes, once the bundle is signed.
    pub fn index_signature(&self) -> Option<&str> {
        self.sigs.as_ref().map(|s| s.index.as_str())
    }

    /// What a controller sends host `name`: its signed statement (its own
    /// entry, bound to this bundle) and the signature, once the bundle is
    /// signed. See [`crate::statement`].
    pub fn host_statement(&self, name: &str) -> Option<(Vec<u8>, &str)> {
        let sig = self.sigs.as_ref()?.host(name)?;
        let host = self.index.host(name)?;
        Some((HostStatement::encode(&self.index, self.index_hash(), host), sig))
    }

    /// Check the signatures embedded in the bundle (the index's and every
    /// host statement's) with `key`; a signed bundle must have all of them.
    pub fn verify_embedded(&self, key: &PublicKey) -> Result<()> {
        verify::verify_index(self.index_bytes(), self.index_signature(), key, &self.path)?;
        for h in &self.index.hosts {
            let (bytes, sig) = self.host_statement(&h.name).ok_or_else(|| BundleError::Corrupt {
                path: self.path.display().to_string(),
                what: format!("no signed statement for host {}; sign the bundle again", h.name),
            })?;
            verify::verify_index(&bytes, Some(sig), key, &self.path)?;
        }
        Ok(())
    }

    pub fn index_hash(&self) -> Hash {
        self.trailer.index_hash
    }

    pub fn trailer(&self) -> Trailer {
        self.trailer
    }

    pub fn blob(&self, h: &Hash) -> Option<&BlobEntry> {
        self.index.blob(h)
    }

    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.file.read_exact_at(&mut b, off).map_err(|e| BundleError::io(&self.path, e))?;
        Ok(b)
    }

    /// A blob's chunks, compressed as stored, from uncompressed offset `from`
    /// (a resumed transfer); each with its uncompressed offset.
    pub fn packed_chunks<'a>(&'a self, e: &'a BlobEntry, from: u64) -> PackedChunks<'a> {
        let i = usize::try_from(from / CHUNK_SIZE).unwrap_or(usize::MAX).min(e.chunks.len());
        let file_off = e.offset + e.chunks[..i].iter().map(|c| u64::from(*c)).sum::<u64>();
        PackedChunks { b: self, e, i, file_off, skip: from % CHUNK_SIZE }
    }

    /// Decompress a blob into `w`, checking its size and blake3.
    pub fn extract(&self, e: &BlobEntry, w: &mut dyn Write) -> Result<()> {
        let mut h = blake3::Hasher::new();
        let mut total = 0u64;
        for c in self.packed_chunks(e, 0) {
            let (off, packed) = c?;
            let raw = unpack(&packed, &e.hash)?;
            let want = (e.size - off).min(CHUNK_SIZE);
            if raw.len() as u64 != want {
                return Err(mismatch(&e.hash, "a chunk of the wrong length"));
            }
            h.update(&raw);
            total += raw.len() as u64;
            w.write_all(&raw).map_err(|e| BundleError::Invalid(format!("write: {e}")))?;
        }
        let got = Hash(*h.finalize().as_bytes());
        if got != e.hash || total != e.size {
            return Err(BundleError::BlobMismatch { hash: e.hash.to_hex(), got: got.to_hex() });
        }
        Ok(())
    }
}

fn mismatch(h: &Hash, what: &str) -> BundleError {
    BundleError::BlobMismatch { hash: h.to_hex(), got: what.into() }
}

fn unpack(packed: &[u8], h: &Hash) -> Result<Vec<u8>> {
    zstd::bulk::decompress(packed, usize::try_from(CHUNK_SIZE).unwrap_or(1 << 20))
        .map_err(|_| mismatch(h, "a chunk that does not decompress"))
}

/// Iterator over a blob's stored chunks; see [`Bundle::packed_chunks`].
pub struct PackedChunks<'a> {
    b: &'a Bundle,
    e: &'a BlobEntry,
    i: usize,
    file_off: u64,
    skip: u64,
}

impl Iterator for PackedChunks<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let len = *self.e.chunks.get(self.i)?;
        let off = self.i as u64 * CHUNK_SIZE;
        let res = self.b.read_at(self.file_off, len as usize).and_then(|packed| {
            if self.skip == 0 {
                return Ok((off, packed));
            }
            // Resuming mid-chunk: send the rest of this chunk, recompressed.
            let raw = unpack(&packed, &self.e.hash)?;
            let skip = usize::try_from(self.skip).unwrap_or(0).min(raw.len());
            let repacked =
                zstd::bulk::compress(&raw[skip..], 1).map_err(|e| BundleError::Invalid(format!("compress: {e}")))?;
            Ok((off + skip as u64, repacked))
        });
        self.skip = 0;
        self.file_off += u64::from(len);
        self.i += 1;
        Some(res)
    }
}

fn check_magic(head: &[u8], path: &Path) -> Result<()> {
    if head == MAGIC {
        return Ok(());
    }
    match OLD_MAGICS.iter().find(|(m, _, _)| head == &m[..]) {
        Some((_, version, what)) => {
            Err(BundleError::OldFormat { path: path.display().to_string(), version: *version, what })
        }
        None => Err(BundleError::NotABundle(path.display().to_string())),
    }
}

fn open_file(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| BundleError::io(path, e))?;
    let len = file.metadata().map_err(|e| BundleError::io(path, e))?.len();
    Ok((file, len))
}

/// The trailer, if the file ends with a valid one.
fn read_trailer(file: &File, len: u64, path: &Path) -> Result<Option<Trailer>> {
    if len < MAGIC.len() as u64 + TRAILER_LEN {
        return Ok(None);
    }
    let mut b = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut b, len - TRAILER_LEN).map_err(|e| BundleError::io(path, e))?;
    Ok(Trailer::decode(&b, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Settings;
    use crate::Writer;

    fn index(agents: Vec<crate::AgentRef>) -> Index {
        Index {
            created_ms: 1,
            project: "p".into(),
            revision: "r".into(),
            base: None,
            agents,
            settings: Settings { confirm_timeout_ms: 0, parallel: 1, connect_timeout_ms: 1 },
            hosts: vec![],
            blobs: vec![],
            external: vec![],
        }
    }

    fn agent(arch: &str, bytes: &[u8]) -> crate::AgentRef {
        crate::AgentRef { arch: arch.into(), hash: Hash(*blake3::hash(bytes).as_bytes()), version: "0.1".into() }
    }

    /// Formats 1 (no secrets) and 2 (one agent, machine unknown) are
    /// refused with what to do, not misread.
    #[test]
    fn bundles_of_formats_1_and_2_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.drv");
        Writer::create(&p).unwrap().finish(index(vec![])).unwrap();
        Bundle::open(&p).unwrap();
        for (magic, version, what) in [(b"DROVERB\x01", 1, "before secrets"), (b"DROVERB\x02", 2, "one agent")] {
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[..8].copy_from_slice(magic);
            let old = dir.path().join(format!("v{version}.drv"));
            std::fs::write(&old, bytes).unwrap();
            let e = Bundle::open(&old).err().unwrap();
            assert!(matches!(e, BundleError::OldFormat { version: v, .. } if v == version), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(what) && msg.contains("build it again with this drover"), "{msg}");
        }
    }

    /// A bundle carries one agent per machine, each a blob checked like any
    /// other, found by what `uname -m` prints (either name of a machine);
    /// the writer sorts them, and a reader refuses two for one machine or an
    /// agent naming no machine.
    #[test]
    fn agents_are_carried_one_per_machine_and_found_by_uname() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.drv");
        let (x86, arm) = (b"x86 agent".as_slice(), b"arm agent".as_slice());
        let mut w = Writer::create(&p).unwrap();
        for b in [x86, arm] {
            w.add(Hash(*blake3::hash(b).as_bytes()), crate::BlobInput::Bytes(b)).unwrap();
        }
        w.finish(index(vec![agent("x86_64", x86), agent("aarch64", arm)])).unwrap();
        let b = Bundle::open(&p).unwrap();
        assert_eq!(b.index.agent_machines(), "aarch64, x86_64");
        for (uname, want) in [("aarch64", arm), ("arm64", arm), ("x86_64\n", x86), ("amd64", x86)] {
            let a = b.index.agent_for(uname).unwrap_or_else(|| panic!("no agent for {uname}"));
            let mut out = Vec::new();
            b.extract(b.blob(&a.hash).unwrap(), &mut out).unwrap();
            assert_eq!(out, want, "{uname}");
        }
        assert!(b.index.agent_for("riscv64").is_none());
        assert_eq!(index(vec![]).agent_machines(), "none");

        let bad = |agents: Vec<crate::AgentRef>| {
            let mut i = b.index.clone();
            i.agents = agents;
            i.validate(b.trailer().index_off).unwrap_err()
        };
        let e = bad(vec![agent("x86_64", x86), agent("x86_64", x86)]);
        assert!(e.contains("two agents for one machine"), "{e}");
        let e = bad(vec![agent("x86_64", x86), agent("aarch64", arm)]);
        assert!(e.contains("not sorted"), "{e}");
        let e = bad(vec![agent("", x86)]);
        assert!(e.contains("names no machine"), "{e}");
    }
}
