//! The content-addressed blob store: `blobs/<blake3 hex>`.
//!
//! Blobs arrive as zstd-compressed chunks appended to `partial/<hex>`; a
//! transfer cut at 90% leaves 90% there, and the next `Diff` reply tells the
//! controller to resume from that offset. A blob is renamed into `blobs/` only
//! after its hash checks out, so a blob in the store is always correct.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use drover_proto::{BlobChunk, Hash};

use crate::fsops::{hash_file, sync_dir};
use crate::layout::Layout;
use crate::{bail, Context, Result};

pub fn has(layout: &Layout, h: &Hash) -> bool {
    layout.blob(h).exists()
}

/// Bytes of `h` already received in an interrupted transfer.
pub fn partial_len(layout: &Layout, h: &Hash) -> u64 {
    fs::metadata(layout.partial(h)).map(|m| m.len()).unwrap_or(0)
}

/// Append one chunk; when the blob is complete (`size` reached) verify and
/// move it into the store.
pub fn receive(layout: &Layout, chunk: &BlobChunk, size: u64) -> Result<()> {
    let data = zstd::decode_all(&chunk.data[..]).ctx(|| format!("decompress chunk of {}", chunk.hash.short()))?;
    let partial = layout.partial(&chunk.hash);
    fs::create_dir_all(layout.partial_dir()).ctx(|| "create partial dir".into())?;
    let have = partial_len(layout, &chunk.hash);
    if chunk.offset != have {
        bail!("blob {}: chunk at offset {} but {} bytes held", chunk.hash.short(), chunk.offset, have);
    }
    let mut f =
        OpenOptions::new().create(true).append(true).open(&partial).ctx(|| format!("open {}", partial.display()))?;
    f.write_all(&data).ctx(|| format!("write {}", partial.display()))?;
    let now = have + data.len() as u64;
    if now > size {
        drop(f);
        let _ = fs::remove_file(&partial);
        bail!("blob {}: received {now} bytes, expected {size}", chunk.hash.short());
    }
    if now == size {
        f.sync_all().ctx(|| format!("fsync {}", partial.display()))?;
        drop(f);
        finish(layout, &partial, &chunk.hash)?;
    }
    Ok(())
}

/// Verify `src`'s hash and move it into the store under `h`.
fn finish(layout: &Layout, src: &Path, h: &Hash) -> Result<()> {
    let (got, _) = hash_file(src)?;
    if got != *h {
        let _ = fs::remove_file(src);
        bail!("blob {} failed verification (content hashes to {}); discarded", h.short(), got.short());
    }
    fs::create_dir_all(layout.blobs()).ctx(|| "create blob dir".into())?;
    fs::rename(src, layout.blob(h)).ctx(|| format!("store blob {}", h.short()))?;
    sync_dir(&layout.blobs())
}

/// Put the file at `path` (whose hash is `h`) into the store as a copy, e.g. a
/// file we are about to replace, so it can be restored later.
pub fn ingest(layout: &Layout, path: &Path, h: &Hash) -> Result<()> {
    if has(layout, h) {
        return Ok(());
    }
    fs::create_dir_all(layout.partial_dir()).ctx(|| "create partial dir".into())?;
    let tmp = layout.partial_dir().join(format!("ingest-{}", h.to_hex()));
    let mut src = fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut dst = fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    io::copy(&mut src, &mut dst).ctx(|| format!("copy {}", path.display()))?;
    dst.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    finish(layout, &tmp, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(h: Hash, offset: u64, raw: &[u8]) -> BlobChunk {
        BlobChunk { hash: h, offset, data: zstd::encode_all(raw, 1).unwrap() }
    }

    #[test]
    fn chunks_resume_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let h = Hash(*blake3::hash(&data).as_bytes());
        receive(&l, &chunk(h, 0, &data[..1000]), 3000).unwrap();
        assert_eq!(partial_len(&l, &h), 1000);
        assert!(!has(&l, &h));
        // A chunk at the wrong offset is refused (no silent corruption).
        assert!(receive(&l, &chunk(h, 0, &data[..10]), 3000).is_err());
        receive(&l, &chunk(h, 1000, &data[1000..]), 3000).unwrap();
        assert!(has(&l, &h));
        assert_eq!(fs::read(l.blob(&h)).unwrap(), data);
    }

    #[test]
    fn corrupt_blob_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let h = Hash(*blake3::hash(b"good").as_bytes());
        let err = receive(&l, &chunk(h, 0, b"evil"), 4).unwrap_err();
        assert!(err.0.contains("failed verification"), "{err}");
        assert!(!has(&l, &h));
        assert_eq!(partial_len(&l, &h), 0);
    }
}
