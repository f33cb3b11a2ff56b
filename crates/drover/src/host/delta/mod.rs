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
//! The format, both halves, is the agent's ([`drover_agent::delta`]:
//! `encode` here, `apply` on the host), so the two cannot disagree.
//!
//! Why zstd with a reference prefix and long-distance matching, at level
//! [`LEVEL`]: measured (bench/delta.sh, docs/benchmarks.md "Binary
//! deltas"), a 35 MiB Rust binary rebuilt after a one-line change costs
//! 86 KB against 15.2 MB whole (0.57 %), made in 0.24 s; level 19 saves 14 %
//! more in 100 times the time, level 3 is 13 % larger. zstd is already in
//! both binaries: no new dependency for the static agent, and the format
//! has a checksum and a bounded decoder. A bsdiff-style crate would add a
//! dependency and a suffix sort of the base (about 8 bytes of memory per
//! byte) for no expected gain on these inputs.
//!
//! Each delta is made once per run and (base, file) pair and shared by
//! every host that needs it, as chunks are ([`DeltaCache`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use drover_proto::{BlobDelta, Hash};
use tokio::sync::OnceCell;

use super::error::HostError;

pub use drover_agent::delta::{eligible, encode, encode_at, LEVEL};

/// Deltas kept in memory for other hosts of the run. Past it, a delta not
/// yet made is not made: its blob travels whole.
pub const CACHE_BYTES: usize = 256 << 20;

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

    /// Whether `h` is to be looked at for keeping as a base now (the first
    /// time this run it was shipped).
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
