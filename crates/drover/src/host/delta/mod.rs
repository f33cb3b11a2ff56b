//! Binary deltas: a changed large file travels as a zstd frame compressed
//! against the version the host holds (`zstd --patch-from`), not whole.
//!
//! The agent says, in its `Diff` reply, which blob it holds for each missing
//! one (`bases`: the live generation's content of the same path, or the
//! same package's version). When the controller holds that base too (a
//! copy kept when it was shipped, [`crate::bases`], or the package cache),
//! it sends the delta instead of the blob; the agent rebuilds the blob and
//! stores it only if its blake3 is the wanted hash. Then one `Missing`
//! round trip asks which deltas failed, and those blobs go whole, in the
//! same session: a delta can only save bytes, never fail an apply.
//!
//! Why zstd with a reference prefix and long-distance matching, at level
//! [`LEVEL`]: measured on a 35 MiB Rust binary rebuilt after a one-line
//! change, a Debian package one revision on, and 5 MiB with 1 % of its
//! bytes changed (bench/delta.sh, docs/benchmarks.md "Binary deltas"), it
//! is within a few percent of zstd's slowest levels at a tenth of their
//! time, and the zstd crate is already in both binaries (no new dependency
//! for the static agent). Level 3 (what whole blobs use) finds too few
//! matches between scattered changes: 12× larger on the 1 % file.
//!
//! Each delta is made once per run and (base, file) pair and shared by
//! every host that needs it, as chunks are ([`DeltaCache`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use drover_proto::{BlobDelta, Hash, DELTA_MAX_SIZE, DELTA_MIN_SIZE};
use tokio::sync::OnceCell;

use super::error::HostError;

/// zstd level of deltas (see the module docs for the measurement).
pub const LEVEL: i32 = 9;

/// Deltas kept in memory for other hosts of the run. Past it, a delta not
/// yet made is not made: its blob travels whole.
pub const CACHE_BYTES: usize = 256 << 20;

/// A delta that rebuilds `target` from `base`: one zstd frame, `base` its
/// reference prefix, its window and long-distance matcher wide enough to
/// reach all of `base` from anywhere in `target`, with zstd's checksum of
/// the content (the agent checks blake3 as well).
pub fn encode(base: &[u8], target: &[u8]) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::{compress_bound, get_error_name, CCtx, CParameter};
    let name = |code| get_error_name(code).to_string();
    let span = base.len().max(target.len()).max(1) as u64;
    // As `zstd --patch-from`: a window one power of two past the larger.
    let window_log = (64 - span.leading_zeros()).clamp(10, 31);
    let mut cctx = CCtx::create();
    for p in [
        CParameter::CompressionLevel(LEVEL),
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

/// Is a file of `size` bytes sent as a delta when it can be?
pub fn eligible(size: u64) -> bool {
    (DELTA_MIN_SIZE..=DELTA_MAX_SIZE).contains(&size)
}

/// The parts a delta travels in, each a pipelined `Request::Delta`.
pub fn parts(hash: Hash, base: Hash, delta: &[u8]) -> impl Iterator<Item = BlobDelta> + '_ {
    let total = delta.len() as u64;
    delta.chunks(drover_proto::CHUNK_SIZE).scan(0u64, move |offset, data| {
        let part = BlobDelta { hash, base, offset: *offset, total, data: data.to_vec() };
        *offset += data.len() as u64;
        Some(part)
    })
}

pub type Delta = Arc<[u8]>;

/// The deltas of one run by (base, file), each made once however many
/// hosts need it; and which blobs were kept as bases already this run.
#[derive(Default)]
pub struct DeltaCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(Hash, Hash), Arc<OnceCell<Option<Delta>>>>,
    bytes: usize,
    /// Deltas made (for tests: the rest were shared).
    made: u64,
    kept: HashSet<Hash>,
}

impl DeltaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn made(&self) -> u64 {
        self.lock().made
    }

    /// Whether `h` is to be kept as a base now (the first time this run).
    pub fn first_keep(&self, h: Hash) -> bool {
        self.lock().kept.insert(h)
    }

    /// The delta from `base` to `target`, made by `make` unless cached or
    /// being made for another host. `None`: no delta (the controller lacks
    /// the base, it would be no smaller than the file, or the cache is
    /// full); the blob travels whole.
    pub(crate) async fn get<F>(&self, base: Hash, target: Hash, make: F) -> Result<Option<Delta>, HostError>
    where
        F: FnOnce() -> Result<Option<Vec<u8>>, HostError>,
    {
        let cell = self.lock().map.entry((base, target)).or_default().clone();
        let delta = cell
            .get_or_try_init(|| async {
                if self.lock().bytes >= CACHE_BYTES {
                    return Ok(None);
                }
                let made = tokio::task::block_in_place(make)?;
                let mut g = self.lock();
                g.made += 1;
                Ok::<_, HostError>(made.map(|d| {
                    g.bytes += d.len();
                    Delta::from(d)
                }))
            })
            .await?;
        Ok(delta.clone())
    }
}

#[cfg(test)]
mod tests;
