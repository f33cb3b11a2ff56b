//! Blobs that arrive as binary deltas against a blob the host already holds.
//!
//! A release that changes a few bytes of a large file (a rebuilt binary, a
//! package one point release on) need not ship the whole file: the
//! controller sends a zstd frame compressed with the old version as its
//! reference prefix (`zstd --patch-from`), and the agent rebuilds the new
//! version from its stored copy of the old one.
//!
//! Which base: the host's live generation's content of the same path, or
//! the version of the same package it holds ([`bases`]), and only from the
//! blob store, whose blobs are verified on the way in: a hand-edited file
//! on disk is never a base. What is rebuilt is stored only when its blake3
//! is the wanted hash ([`crate::blobs::ingest`] checks it), so a delta
//! cannot put wrong content in the store, whatever it holds. A delta that
//! fails (its base gone, a part missing, a wrong result) is discarded and
//! the blob stays missing: the controller asks (`Request::Missing`) and
//! sends it whole.
//!
//! Memory: the base, the result and the delta are held at once, each at
//! most [`DELTA_MAX_SIZE`]: the agent stays a small static binary, with no
//! mapping of files, and the limit bounds what a host spends.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use drover_proto::{BlobDelta, EntryKind, Hash, Manifest, DELTA_MAX_SIZE, DELTA_MIN_SIZE};

use crate::fsops::private_dir;
use crate::layout::Layout;
use crate::{bail, blobs, Context, Result};

/// Where the parts of a delta for `h` accumulate.
fn parts(layout: &Layout, h: &Hash) -> PathBuf {
    layout.partial_dir().join(format!("{}.delta", h.to_hex()))
}

/// Is a blob of `size` bytes worth a delta, and within the memory bound?
pub fn eligible(size: u64) -> bool {
    (DELTA_MIN_SIZE..=DELTA_MAX_SIZE).contains(&size)
}

/// For each missing blob (`missing`: blob, bytes already received) the host
/// could rebuild from a delta: the blob it holds for the same path in
/// `current` (its live generation) or for the same package, as (missing,
/// base). Only blobs with nothing received yet (a cut whole transfer
/// resumes whole), of an [`eligible`] size, with a base in the store of an
/// eligible size too.
pub fn bases(
    layout: &Layout,
    current: Option<&Manifest>,
    desired: &Manifest,
    missing: &[(Hash, u64)],
) -> Vec<(Hash, Hash)> {
    let Some(current) = current else { return vec![] };
    let held = |h: &Hash| fs::metadata(layout.blob(h)).is_ok_and(|m| eligible(m.len()));
    let mut out = Vec::new();
    for (want, have) in missing {
        if *have != 0 {
            continue;
        }
        let by_path = desired.entries.iter().find_map(|e| match e.kind {
            EntryKind::File { hash, size } if hash == *want && eligible(size) => Some(&e.path),
            _ => None,
        });
        let base = match by_path {
            Some(path) => current.entries.iter().find(|e| &e.path == path).and_then(|e| match e.kind {
                EntryKind::File { hash, .. } => Some(hash),
                _ => None,
            }),
            None => {
                let package = desired.setup.packages.iter().find(|p| p.hash == *want && eligible(p.size));
                package.and_then(|p| current.setup.packages.iter().find(|c| c.name == p.name).map(|c| c.hash))
            }
        };
        if let Some(base) = base.filter(|b| b != want && held(b)) {
            out.push((*want, base));
        }
    }
    out
}

/// Take one part of a delta for a blob of `size` bytes. Once the delta is
/// all in, rebuild the blob from its base, verify and store it. An error is
/// the delta's failure (its parts are discarded; the blob stays missing).
pub fn receive(layout: &Layout, d: &BlobDelta, size: u64) -> Result<()> {
    let path = parts(layout, &d.hash);
    let fail = |e| {
        let _ = fs::remove_file(&path);
        Err(e)
    };
    if !eligible(size) || d.total > DELTA_MAX_SIZE {
        return fail(crate::AgentError::new(format!(
            "blob {}: a delta of {} bytes for {size} bytes is outside the delta limits",
            d.hash.short(),
            d.total
        )));
    }
    private_dir(&layout.partial_dir())?;
    let have = if d.offset == 0 { 0 } else { fs::metadata(&path).map(|m| m.len()).unwrap_or(0) };
    if d.offset != have || have + d.data.len() as u64 > d.total {
        let msg = format!("blob {}: delta part at offset {} but {have} bytes held", d.hash.short(), d.offset);
        return fail(crate::AgentError::new(msg));
    }
    let written = OpenOptions::new()
        .create(true)
        .write(true)
        .append(d.offset != 0)
        .truncate(d.offset == 0)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&d.data));
    if let Err(e) = written {
        return fail(crate::space::write_error(e, "write", &path.display().to_string(), || {
            crate::space::of_path(&path)
        }));
    }
    if have + (d.data.len() as u64) < d.total {
        return Ok(());
    }
    let rebuilt = rebuild(layout, &path, &d.base, &d.hash, size);
    let _ = fs::remove_file(&path);
    rebuilt
}

/// Apply the delta at `path` to the stored blob `base`; store the result
/// as `want` if it is `size` bytes hashing to `want`.
fn rebuild(layout: &Layout, path: &std::path::Path, base: &Hash, want: &Hash, size: u64) -> Result<()> {
    let base_path = layout.blob(base);
    let base_len = fs::metadata(&base_path).map(|m| m.len()).unwrap_or(0);
    if !blobs::has(layout, base) || base_len > DELTA_MAX_SIZE {
        bail!("blob {}: its delta base {} is not held", want.short(), base.short());
    }
    let prefix = fs::read(&base_path).ctx(|| format!("read {}", base_path.display()))?;
    let delta = fs::read(path).ctx(|| format!("read {}", path.display()))?;
    let out = apply(&prefix, &delta, size)
        .map_err(|e| crate::AgentError::new(format!("blob {}: delta does not apply: {e}", want.short())))?;
    let got = Hash(*blake3::hash(&out).as_bytes());
    if got != *want {
        bail!("blob {}: rebuilt from its delta, it hashes to {}; discarded", want.short(), got.short());
    }
    blobs::ingest(layout, &mut &out[..], want)
}

/// zstd level of deltas: measured against 3 (what whole blobs use) and 19
/// on a rebuilt 35 MiB binary, a package one revision on and a file with 1 %
/// of its bytes changed (bench/delta.sh, docs/benchmarks.md): on the binary
/// 3 makes a 13 % larger delta, 19 a 14 % smaller one in 100 times the time
/// (25 s against 0.24 s), made once per run.
pub const LEVEL: i32 = 9;

/// The delta the controller sends: one zstd frame that rebuilds `target`
/// from `base` (its reference prefix, as `zstd --patch-from` makes), its
/// window and long-distance matcher wide enough to reach all of `base` from
/// anywhere in `target`, with zstd's checksum of the content (the agent
/// checks blake3 as well). Here beside [`apply`] so both halves of the
/// format are one module's; only the controller calls it.
pub fn encode(base: &[u8], target: &[u8]) -> std::result::Result<Vec<u8>, String> {
    encode_at(base, target, LEVEL)
}

/// [`encode`] at another zstd level (for measuring).
pub fn encode_at(base: &[u8], target: &[u8], level: i32) -> std::result::Result<Vec<u8>, String> {
    use zstd::zstd_safe::{compress_bound, get_error_name, CCtx, CParameter};
    let name = |code| get_error_name(code).to_string();
    let span = base.len().max(target.len()).max(1) as u64;
    // As `zstd --patch-from`: a window one power of two past the larger.
    let window_log = (64 - span.leading_zeros()).clamp(10, 31);
    let mut cctx = CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(true),
    ] {
        cctx.set_parameter(p).map_err(name)?;
    }
    cctx.ref_prefix(base).map_err(name)?;
    let mut out = Vec::with_capacity(compress_bound(target.len()));
    cctx.compress2(&mut out, target).map_err(name)?;
    Ok(out)
}

/// The content `delta` rebuilds from `base`: at most `size` bytes (a delta
/// that would make more fails instead of growing the buffer).
pub fn apply(base: &[u8], delta: &[u8], size: u64) -> std::result::Result<Vec<u8>, String> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let mut out: Vec<u8> = Vec::with_capacity(usize::try_from(size).map_err(|e| e.to_string())?);
    let mut dctx = DCtx::create();
    let name = |code| zstd::zstd_safe::get_error_name(code).to_string();
    dctx.set_parameter(DParameter::WindowLogMax(31)).map_err(name)?;
    dctx.ref_prefix(base).map_err(name)?;
    dctx.decompress(&mut out, delta).map_err(name)?;
    if out.len() as u64 != size {
        return Err(format!("made {} bytes, expected {size}", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use drover_proto::{Entry, Package};

    use super::*;

    fn encode(base: &[u8], target: &[u8]) -> Vec<u8> {
        super::encode(base, target).unwrap()
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn hash(b: &[u8]) -> Hash {
        Hash(*blake3::hash(b).as_bytes())
    }

    /// A base in the store, and a new version with a few bytes changed.
    fn versions(l: &Layout) -> (Vec<u8>, Hash, Vec<u8>, Hash) {
        let old = noise(300_000, 7);
        let mut new = old.clone();
        new[1000..1010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"appended");
        blobs::ingest(l, &mut &old[..], &hash(&old)).unwrap();
        (old.clone(), hash(&old), new.clone(), hash(&new))
    }

    fn send(l: &Layout, want: Hash, base: Hash, delta: &[u8], size: u64, part: usize) -> Result<()> {
        let mut offset = 0;
        for data in delta.chunks(part) {
            let d = BlobDelta { hash: want, base, offset, total: delta.len() as u64, data: data.to_vec() };
            receive(l, &d, size)?;
            offset += data.len() as u64;
        }
        Ok(())
    }

    #[test]
    fn a_delta_in_parts_rebuilds_the_blob_from_its_base_and_stores_it() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (old, base, new, want) = versions(&l);
        let delta = encode(&old, &new);
        assert!(delta.len() < 1000, "a few bytes changed: a small delta ({} bytes)", delta.len());
        send(&l, want, base, &delta, new.len() as u64, 100).unwrap();
        assert_eq!(fs::read(l.blob(&want)).unwrap(), new);
        assert!(!parts(&l, &want).exists(), "the delta's parts are gone once used");
    }

    /// A delta whose bytes were damaged on the way: the blob is not stored
    /// (the blake3 check, or zstd's own), nothing is left in the store, and
    /// the whole blob sent after it still arrives and verifies.
    #[test]
    fn a_corrupted_delta_stores_nothing_and_the_whole_blob_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (old, base, new, want) = versions(&l);
        let mut delta = encode(&old, &new);
        let mid = delta.len() / 2;
        delta[mid] ^= 0x55;
        let err = send(&l, want, base, &delta, new.len() as u64, 64).unwrap_err();
        assert!(err.0.contains(&want.short()), "{err}");
        assert!(!blobs::has(&l, &want) && !parts(&l, &want).exists());
        assert_eq!(blobs::resume_from(&l, &want, new.len() as u64, true), Some(0), "still missing, from 0");
        let chunk = drover_proto::BlobChunk { hash: want, offset: 0, data: zstd::encode_all(&new[..], 3).unwrap() };
        blobs::receive(&l, &chunk, new.len() as u64).unwrap();
        assert_eq!(fs::read(l.blob(&want)).unwrap(), new);
    }

    /// A delta against the wrong base (the right size, other bytes) makes
    /// other content: its hash is checked and it is discarded.
    #[test]
    fn a_delta_that_rebuilds_other_content_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (old, _, new, want) = versions(&l);
        let other = noise(old.len(), 99);
        blobs::ingest(&l, &mut &other[..], &hash(&other)).unwrap();
        let delta = encode(&old, &new);
        let err = send(&l, want, hash(&other), &delta, new.len() as u64, 1 << 20).unwrap_err();
        assert!(!blobs::has(&l, &want), "{err}");
    }

    #[test]
    fn a_delta_whose_base_is_gone_fails_and_the_blob_stays_missing() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (old, base, new, want) = versions(&l);
        fs::remove_file(l.blob(&base)).unwrap();
        let err = send(&l, want, base, &encode(&old, &new), new.len() as u64, 1 << 20).unwrap_err();
        assert!(err.0.contains("is not held"), "{err}");
        assert!(!blobs::has(&l, &want));
    }

    /// A part out of order (a lost frame) fails the delta instead of
    /// rebuilding from a hole.
    #[test]
    fn a_part_out_of_order_fails_the_delta() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (old, base, new, want) = versions(&l);
        let delta = encode(&old, &new);
        let d = BlobDelta { hash: want, base, offset: 10, total: delta.len() as u64, data: delta[10..].to_vec() };
        let err = receive(&l, &d, new.len() as u64).unwrap_err();
        assert!(err.0.contains("offset 10"), "{err}");
        assert!(!blobs::has(&l, &want) && !parts(&l, &want).exists());
    }

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File { size: data.len() as u64, hash: hash(data) },
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
            source: None,
        }
    }

    #[test]
    fn the_base_offered_is_the_live_generations_content_of_the_same_path_or_package() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let (old, base, new, want) = versions(&l);
        let mut current = Manifest::default();
        current.entries.push(file("/usr/bin/app", &old));
        let mut desired = Manifest::default();
        desired.entries.push(file("/usr/bin/app", &new));
        assert_eq!(bases(&l, Some(&current), &desired, &[(want, 0)]), [(want, base)]);
        // A transfer already under way resumes whole; a host with no live
        // generation has no base.
        assert!(bases(&l, Some(&current), &desired, &[(want, 5)]).is_empty());
        assert!(bases(&l, None, &desired, &[(want, 0)]).is_empty());
        // Another path's content is no base; nor a base the store lacks.
        let mut moved = Manifest::default();
        moved.entries.push(file("/usr/bin/other", &new));
        assert!(bases(&l, Some(&current), &moved, &[(want, 0)]).is_empty());
        fs::remove_file(l.blob(&base)).unwrap();
        assert!(bases(&l, Some(&current), &desired, &[(want, 0)]).is_empty());
        // A package: the version of the same name the host holds.
        blobs::ingest(&l, &mut &old[..], &base).unwrap();
        let pkg = |version: &str, h: Hash, size: usize| Package {
            name: "git".into(),
            version: version.into(),
            arch: "amd64".into(),
            hash: h,
            size: size as u64,
            needed_by: vec![],
        };
        let (mut cur, mut des) = (Manifest::default(), Manifest::default());
        cur.setup.packages.push(pkg("1", base, old.len()));
        des.setup.packages.push(pkg("2", want, new.len()));
        assert_eq!(bases(&l, Some(&cur), &des, &[(want, 0)]), [(want, base)]);
    }

    #[test]
    fn small_and_huge_blobs_are_never_deltas() {
        assert!(!eligible(DELTA_MIN_SIZE - 1) && eligible(DELTA_MIN_SIZE));
        assert!(eligible(DELTA_MAX_SIZE) && !eligible(DELTA_MAX_SIZE + 1));
    }
}
