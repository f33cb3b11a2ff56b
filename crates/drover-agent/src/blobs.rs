//! The content-addressed blob store: `blobs/<blake3 hex>`.
//!
//! Blobs arrive as zstd-compressed chunks appended to `partial/<hex>`; a
//! transfer cut at 90% leaves 90% there, and the next `Diff` reply tells the
//! controller to resume from that offset. A blob is renamed into `blobs/` only
//! after its hash checks out, so a blob in the store is always correct.
//!
//! Everything here is created 0600 in 0700 directories: blobs hold the
//! content of 0600 files (keys, passwords) and the prior content of files
//! drover replaced (a managed `/etc/shadow`'s previous version).
//!
//! The empty blob needs no transfer: its content is known. It is written
//! locally when a transition needs it (a zero-length transfer would never
//! send a chunk, so waiting for one would wait forever).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use drover_proto::{BlobChunk, Hash};

use crate::fsops::{hash_file, private_dir, sync_dir};
use crate::layout::Layout;
use crate::{bail, hooks, space, Context, Result};

/// blake3 of zero bytes.
pub fn empty_hash() -> Hash {
    Hash(*blake3::hash(b"").as_bytes())
}

pub fn has(layout: &Layout, h: &Hash) -> bool {
    layout.blob(h).exists()
}

/// Does the controller need to send `h`? Never the empty blob.
pub fn needs_transfer(layout: &Layout, h: &Hash) -> bool {
    *h != empty_hash() && !has(layout, h)
}

/// Put the empty blob in the store (idempotent).
pub fn store_empty(layout: &Layout) -> Result<()> {
    let h = empty_hash();
    if has(layout, &h) {
        return Ok(());
    }
    ingest(layout, &mut io::empty(), &h)
}

fn create_private(path: &Path, append: bool) -> Result<fs::File> {
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path).ctx(|| format!("open {}", path.display()))
}

/// Bytes of `h` already received in an interrupted transfer.
pub fn partial_len(layout: &Layout, h: &Hash) -> u64 {
    fs::metadata(layout.partial(h)).map(|m| m.len()).unwrap_or(0)
}

/// Where a transfer of `h` (`size` bytes) resumes: `None` when the store
/// has it, else the bytes already held in `partial/`.
///
/// A partial transfer that already holds all `size` bytes was cut between
/// its last write and its move into the store (the agent killed during that
/// fsync). Left alone it would stay there: the controller resumes at
/// `size`, sends nothing, and every apply fails with "not received". With
/// `repair` (a session holding the host lock) it is synced, verified and
/// stored now, or discarded and sent again whole; a read-only session
/// (`plan`) reports it as it finds it and writes nothing.
pub fn resume_from(layout: &Layout, h: &Hash, size: u64, repair: bool) -> Option<u64> {
    if !needs_transfer(layout, h) {
        return None;
    }
    let have = partial_len(layout, h);
    if have < size || !repair {
        return Some(have);
    }
    let partial = layout.partial(h);
    let synced = fs::File::open(&partial).and_then(|f| f.sync_all());
    match synced.ok().map(|()| finish(layout, &partial, h)) {
        Some(Ok(())) => None,
        _ => {
            let _ = fs::remove_file(&partial);
            Some(0)
        }
    }
}

/// Append one chunk; when the blob is complete (`size` reached) verify and
/// move it into the store.
pub fn receive(layout: &Layout, chunk: &BlobChunk, size: u64) -> Result<()> {
    let data = zstd::decode_all(&chunk.data[..]).ctx(|| format!("decompress chunk of {}", chunk.hash.short()))?;
    let partial = layout.partial(&chunk.hash);
    private_dir(&layout.partial_dir())?;
    let have = partial_len(layout, &chunk.hash);
    if chunk.offset != have {
        bail!("blob {}: chunk at offset {} but {} bytes held", chunk.hash.short(), chunk.offset, have);
    }
    let mut f = create_private(&partial, true)?;
    hooks::fault("blob")
        .and_then(|()| f.write_all(&data))
        .map_err(|e| space::write_error(e, "write", &partial.display().to_string(), || space::of_path(&partial)))?;
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
    private_dir(&layout.blobs())?;
    let dst = layout.blob(h);
    fs::rename(src, &dst)
        .map_err(|e| space::write_error(e, "store", &dst.display().to_string(), || space::of_path(&dst)))?;
    sync_dir(&layout.blobs())
}

/// Put content read from `src` (whose hash should be `h`) into the store as
/// a copy, e.g. a file we are about to replace, so it can be restored later.
/// The caller opens `src` (managed paths only through [`crate::safefs`]).
pub fn ingest(layout: &Layout, src: &mut dyn Read, h: &Hash) -> Result<()> {
    if has(layout, h) {
        return Ok(());
    }
    private_dir(&layout.partial_dir())?;
    let tmp = layout.partial_dir().join(format!("ingest-{}", h.to_hex()));
    let copied = hooks::fault("keep").and_then(|()| {
        let mut dst = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
        io::copy(src, &mut dst)?;
        dst.sync_all()
    });
    if let Err(e) = copied {
        // No half copy left taking the space the next attempt needs.
        let _ = fs::remove_file(&tmp);
        return Err(space::write_error(e, "copy into", &tmp.display().to_string(), || space::of_path(&tmp)));
    }
    finish(layout, &tmp, h).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(h: Hash, offset: u64, raw: &[u8]) -> BlobChunk {
        BlobChunk { hash: h, offset, data: zstd::encode_all(raw, 1).unwrap() }
    }

    /// The agent killed after writing a blob's last chunk and before moving
    /// it into the store: the next session stores it instead of asking for
    /// bytes past its end (which the controller never sends).
    #[test]
    fn a_whole_partial_transfer_is_stored_not_resumed_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let data = b"all of it arrived".to_vec();
        let h = Hash(*blake3::hash(&data).as_bytes());
        private_dir(&l.partial_dir()).unwrap();
        fs::write(l.partial(&h), &data).unwrap();
        let size = data.len() as u64;
        // Read-only: reported as found, nothing written.
        assert_eq!(resume_from(&l, &h, size, false), Some(size));
        assert!(!has(&l, &h) && l.partial(&h).exists());
        assert_eq!(resume_from(&l, &h, size, true), None);
        assert_eq!(fs::read(l.blob(&h)).unwrap(), data);
        assert!(!l.partial(&h).exists());
        assert_eq!(resume_from(&l, &h, size, true), None);
    }

    /// A partial transfer as long as the blob (or longer) whose content does
    /// not verify is dropped and sent again from the start.
    #[test]
    fn a_whole_partial_transfer_that_does_not_verify_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let data = b"the real content".to_vec();
        let h = Hash(*blake3::hash(&data).as_bytes());
        private_dir(&l.partial_dir()).unwrap();
        for junk in [b"the REAL content".to_vec(), b"the real content and more".to_vec()] {
            fs::write(l.partial(&h), &junk).unwrap();
            assert_eq!(resume_from(&l, &h, data.len() as u64, true), Some(0));
            assert!(!has(&l, &h) && !l.partial(&h).exists());
        }
        // A short one resumes where it stopped.
        fs::write(l.partial(&h), &data[..4]).unwrap();
        assert_eq!(resume_from(&l, &h, data.len() as u64, true), Some(4));
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
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(l.blob(&h)).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(l.blobs()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn the_empty_blob_needs_no_transfer_and_is_stored_locally() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let e = empty_hash();
        assert!(!needs_transfer(&l, &e));
        store_empty(&l).unwrap();
        assert!(has(&l, &e));
        assert_eq!(fs::read(l.blob(&e)).unwrap(), b"");
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
