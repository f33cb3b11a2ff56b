//! Writing a bundle: blobs stream out as they are read (one chunk in memory
//! at a time), the index goes last. The file is written under a temporary
//! name and renamed when complete, so a crash never leaves something that
//! looks like a bundle.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use drover_proto::Hash;

use crate::format::{BlobEntry, Index, Trailer, CHUNK_SIZE, MAGIC};
use crate::{BundleError, Result};

/// zstd level for blob chunks: fast, and most artifacts (binaries, images,
/// archives) are compressed already.
const LEVEL: i32 = 3;

pub struct Writer {
    /// `None` once finished.
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    pos: u64,
    blobs: Vec<BlobEntry>,
    seen: HashSet<Hash>,
}

/// Where a blob's bytes come from.
pub enum BlobInput<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl Writer {
    pub fn create(dest: &Path) -> Result<Writer> {
        let mut tmp = dest.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let f = File::create(&tmp).map_err(|e| BundleError::io(&tmp, e))?;
        let mut w = Writer {
            out: Some(BufWriter::with_capacity(1 << 20, f)),
            tmp,
            dest: dest.to_path_buf(),
            pos: 0,
            blobs: Vec::new(),
            seen: HashSet::new(),
        };
        w.write(MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| BundleError::Invalid("bundle already finished".into()))?;
        out.write_all(b).map_err(|e| BundleError::io(&self.tmp, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Is this blob in the bundle already?
    pub fn contains(&self, h: &Hash) -> bool {
        self.seen.contains(h)
    }

    /// Add a blob (once: later calls with the same hash do nothing and return
    /// `false`). The content is hashed as it is copied; a file that no longer
    /// matches `hash` (edited since the project was loaded) is an error.
    pub fn add(&mut self, hash: Hash, input: BlobInput<'_>) -> Result<bool> {
        if !self.seen.insert(hash) {
            return Ok(false);
        }
        let (mut reader, label): (Box<dyn Read>, String) = match input {
            BlobInput::File(p) => {
                (Box::new(File::open(p).map_err(|e| BundleError::io(p, e))?), p.display().to_string())
            }
            BlobInput::Bytes(b) => (Box::new(b), format!("blob {}", hash.short())),
        };
        let offset = self.pos;
        let mut chunks = Vec::new();
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        loop {
            let n = read_full(&mut reader, &mut buf).map_err(|e| BundleError::Invalid(format!("read {label}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            let packed = zstd::bulk::compress(&buf[..n], LEVEL)
                .map_err(|e| BundleError::Invalid(format!("compress {label}: {e}")))?;
            chunks.push(u32::try_from(packed.len()).map_err(|_| BundleError::Invalid("chunk too large".into()))?);
            self.write(&packed)?;
            if n < buf.len() {
                break;
            }
        }
        let got = Hash(*hasher.finalize().as_bytes());
        if got != hash {
            return Err(BundleError::Invalid(format!(
                "{label} changed while the bundle was built (content is {}, expected {}); build again",
                got.short(),
                hash.short()
            )));
        }
        self.blobs.push(BlobEntry { hash, size, offset, chunks });
        Ok(true)
    }

    /// Bytes of blob data written so far (compressed), magic included.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Write the index (its `blobs` are filled in here) and the trailer,
    /// sync, and move the file into place. Returns the final index.
    pub fn finish(mut self, mut index: Index) -> Result<Index> {
        self.blobs.sort_by_key(|a| a.hash);
        index.blobs = std::mem::take(&mut self.blobs);
        index.external.sort();
        index.external.dedup();
        index.agents.sort_by(|a, b| a.arch.cmp(&b.arch));
        let bytes = postcard::to_stdvec(&index).map_err(|e| BundleError::Invalid(format!("encode index: {e}")))?;
        let index_off = self.pos;
        self.write(&bytes)?;
        let t = Trailer {
            index_off,
            index_len: bytes.len() as u64,
            sig_off: self.pos,
            sig_len: 0,
            index_hash: Hash(*blake3::hash(&bytes).as_bytes()),
        };
        self.write(&t.encode())?;
        let out = self.out.take().ok_or_else(|| BundleError::Invalid("bundle already finished".into()))?;
        let f = out.into_inner().map_err(|e| BundleError::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| BundleError::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| BundleError::io(&self.dest, e))?;
        Ok(index)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Not finished (an error on the way): leave nothing behind.
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Fill `buf` unless the input ends first; the byte count read.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
