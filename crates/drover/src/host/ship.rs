//! Shipping blobs: each chunk is compressed once per run and the same bytes
//! are written to every host that needs them.
//!
//! A first apply sends the same files to every host. Compressing them per
//! host cost a zstd context, a read buffer, the compressed copy and a framed
//! copy per host in flight: 551 MiB at 100 hosts for one 5 MiB file. Now a
//! chunk is read and compressed by the first host that needs it, kept in a
//! bounded cache ([`ChunkCache`]), and written to each connection from there
//! (`AgentLink::send_chunk`: no per-host copy). Transfers stay resumable:
//! chunks are keyed by blob and offset, so a host resuming at any offset
//! gets (or compresses) exactly the chunk that starts there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use drover_proto::{Hash, CHUNK_SIZE};
use drover_spec::{BlobSource, Compiled, Host};
use tokio::sync::OnceCell;

use super::error::HostError;
use super::report::HostReport;
use super::source::StateSource;
use crate::progress::HostProgress;
use crate::transport::Connection;

/// Compressed bytes kept for other hosts. Hosts of one run stream the same
/// blob at about the same time; 64 chunks of lead is plenty, and the bound
/// holds however large the artifacts are.
pub const CACHE_BYTES: usize = 64 << 20;

/// zstd level: 3 is zstd's default, fast enough to stay far ahead of SSH.
const LEVEL: i32 = 3;

/// Hosts receiving a large transfer at once, per run.
///
/// Why: russh takes whatever a channel's window allows (2 MiB from
/// OpenSSH's sshd) and keeps it, encrypted or queued, until the socket
/// drains. With 100 hosts whose sshds read slower than the controller
/// writes, that was 76 of the 112 MiB of heap at the peak of a 100-host
/// first apply (heaptrack, docs/benchmarks.md). Sixteen streams at once
/// still fill any controller's uplink; the others wait their turn.
pub const TRANSFER_SLOTS: usize = 16;

/// A host's transfer smaller than this needs no slot: it cannot hold much
/// in flight, and queueing thousands of small first applies behind sixteen
/// slots would cost each a round trip of waiting.
pub const LARGE_TRANSFER: u64 = 1 << 20;

type Chunk = Arc<[u8]>;

/// Compressed chunks by (blob, uncompressed offset), least recently used
/// first out once over `cap` bytes. Many hosts asking for one chunk at once
/// wait for a single compression.
pub struct ChunkCache {
    cap: usize,
    inner: Mutex<Inner>,
    /// Large transfers in flight (see [`TRANSFER_SLOTS`]).
    slots: tokio::sync::Semaphore,
    /// The run's deltas (see [`super::delta`]).
    pub deltas: super::delta::DeltaCache,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(Hash, u64), Slot>,
    bytes: usize,
    tick: u64,
    /// Chunks compressed (for tests and the curious: hits are the rest).
    compressed: u64,
}

struct Slot {
    cell: Arc<OnceCell<Chunk>>,
    used: u64,
    /// 0 until the chunk is filled in.
    size: usize,
}

impl ChunkCache {
    pub fn new(cap: usize) -> ChunkCache {
        ChunkCache {
            cap,
            inner: Mutex::new(Inner::default()),
            slots: tokio::sync::Semaphore::new(TRANSFER_SLOTS),
            deltas: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many chunks were compressed so far (each at most once while cached).
    pub fn compressed(&self) -> u64 {
        self.lock().compressed
    }

    /// The compressed chunk of `hash` at `offset`, made by `make` (raw bytes
    /// in, compressed here) unless cached or being made by another host.
    pub(crate) async fn get<F, Fut>(&self, hash: Hash, offset: u64, make: F) -> Result<Chunk, HostError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, HostError>>,
    {
        let cell = {
            let mut g = self.lock();
            g.tick += 1;
            let tick = g.tick;
            let slot =
                g.map.entry((hash, offset)).or_insert_with(|| Slot { cell: Arc::default(), used: tick, size: 0 });
            slot.used = tick;
            slot.cell.clone()
        };
        let chunk = cell
            .get_or_try_init(|| async {
                let raw = make().await?;
                let packed: Chunk = tokio::task::block_in_place(|| zstd::bulk::compress(&raw, LEVEL))
                    .map_err(|e| HostError::Compress(e.to_string()))?
                    .into();
                let mut g = self.lock();
                g.compressed += 1;
                if let Some(slot) = g.map.get_mut(&(hash, offset)) {
                    slot.size = packed.len();
                    g.bytes += packed.len();
                    g.evict(self.cap);
                }
                Ok::<Chunk, HostError>(packed)
            })
            .await?;
        Ok(chunk.clone())
    }
}

impl Inner {
    /// Drop the least recently used filled chunks until within `cap`
    /// (hosts still sending one keep their reference).
    fn evict(&mut self, cap: usize) {
        while self.bytes > cap {
            let Some(key) = self.map.iter().filter(|(_, s)| s.size > 0).min_by_key(|(_, s)| s.used).map(|(k, _)| *k)
            else {
                return;
            };
            if let Some(s) = self.map.remove(&key) {
                self.bytes -= s.size;
            }
        }
    }
}

/// What blobs are shipped from: the run's source and its chunk cache.
pub struct Shipper<'a> {
    pub source: &'a dyn StateSource,
    pub chunks: &'a ChunkCache,
}

impl Shipper<'_> {
    /// Send the blobs a host lacks (through the peer relay when enabled;
    /// as deltas against `bases` where the controller holds them), and
    /// flush.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_all(
        &self,
        host: &Host,
        conn: &mut Connection,
        c: &Compiled,
        missing: &[(Hash, u64)],
        bases: &[(Hash, Hash)],
        r: &mut HostReport,
        p: &HostProgress,
    ) -> Result<(), HostError> {
        let direct = match self.source.relay() {
            Some(relay) => relay.deliver(self, host, conn, c, missing, r, p).await?,
            None => missing.to_vec(),
        };
        let (deltas, direct) = self.plan_deltas(c, &direct, bases).await?;
        let delta_bytes: u64 = deltas.iter().map(|(_, _, d)| d.len() as u64).sum();
        let large = pending_bytes(c, &direct) + delta_bytes >= LARGE_TRANSFER;
        let _slot = match large {
            true => {
                p.step("waiting for a transfer slot".to_string());
                Some(self.chunks.slots.acquire().await.map_err(|e| HostError::SlotsClosed(e.to_string()))?)
            }
            false => None,
        };
        self.send_deltas(conn, c, &deltas, r, p).await?;
        for (i, (hash, have)) in direct.iter().enumerate() {
            p.step(format!("sending {}/{} blobs", i + 1, direct.len()));
            self.blob(conn, c, hash, *have, r, p).await?;
        }
        if !deltas.is_empty() {
            self.settle_deltas(conn, c, &deltas, r, p).await?;
        }
        conn.link.flush().await?;
        if large {
            // The slot is free once the agent has taken everything in: the
            // agent answers in order, so its `Pong` comes after the last
            // chunk is on its disk, and nothing of this host is left in
            // the controller's buffers.
            // Up to a channel window may still be on its way: as long as the
            // apply step's wait, not one silent step's.
            let op = conn.link.timeout();
            conn.link.set_timeout((op * 10).max(std::time::Duration::from_secs(300)));
            let pong = conn.link.call(&drover_proto::Request::Ping, &mut |_| {}).await;
            conn.link.set_timeout(op);
            match pong? {
                drover_proto::Response::Pong => {}
                other => return Err(HostError::unexpected("Ping", &other)),
            }
        }
        Ok(())
    }

    /// Queue one blob's chunks from offset `have` (pipelined: no reply).
    pub(crate) async fn blob(
        &self,
        conn: &mut Connection,
        c: &Compiled,
        hash: &Hash,
        have: u64,
        r: &mut HostReport,
        p: &HostProgress,
    ) -> Result<(), HostError> {
        if let Some(chunks) = self.source.packed(hash, have) {
            for chunk in chunks {
                let (offset, data) = chunk.map_err(HostError::Bundle)?;
                let n = data.len() as u64;
                conn.link.send_chunk(*hash, offset, &data).await?;
                r.bytes_sent += n;
                p.sent(n);
            }
            r.blobs_sent += 1;
            return Ok(());
        }
        let src = c.blobs.get(hash).ok_or_else(|| HostError::UnknownBlob(hash.short()))?;
        let len = match src {
            BlobSource::Bytes(b) => b.len() as u64,
            BlobSource::File(path) => tokio::fs::metadata(path).await.map_err(|e| read_error(path, e))?.len(),
        };
        let mut offset = have.min(len);
        while offset < len {
            let n = (len - offset).min(CHUNK_SIZE as u64) as usize;
            let data = self.chunks.get(*hash, offset, || read(src, offset, n)).await?;
            conn.link.send_chunk(*hash, offset, &data).await?;
            r.bytes_sent += data.len() as u64;
            p.sent(data.len() as u64);
            offset += n as u64;
        }
        r.blobs_sent += 1;
        self.keep_base(c, hash);
        Ok(())
    }
}

/// Bytes still to send of `direct` ((blob, bytes the host has) pairs), by
/// the sizes the manifest gives (files and packages; anything else, a
/// sealed secret's ciphertext, counts as small).
fn pending_bytes(c: &Compiled, direct: &[(Hash, u64)]) -> u64 {
    let sizes: HashMap<Hash, u64> = c
        .manifest
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            drover_proto::EntryKind::File { hash, size } => Some((hash, size)),
            _ => None,
        })
        .chain(c.manifest.setup.packages.iter().map(|p| (p.hash, p.size)))
        .collect();
    direct.iter().map(|(h, have)| sizes.get(h).map_or(0, |s| s.saturating_sub(*have))).sum()
}

/// `n` bytes of a blob from `offset`. A file is read one chunk at a time:
/// a large artifact is never held whole.
async fn read(src: &BlobSource, offset: u64, n: usize) -> Result<Vec<u8>, HostError> {
    match src {
        BlobSource::Bytes(b) => Ok(b[offset as usize..offset as usize + n].to_vec()),
        BlobSource::File(path) => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut buf = vec![0; n];
            let read = async {
                let mut f = tokio::fs::File::open(path).await?;
                f.seek(std::io::SeekFrom::Start(offset)).await?;
                f.read_exact(&mut buf).await
            };
            read.await.map_err(|e| read_error(path, e))?;
            Ok(buf)
        }
    }
}

fn read_error(path: &std::path::Path, e: std::io::Error) -> HostError {
    HostError::Read { path: path.display().to_string(), error: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash {
        Hash([b; 32])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_is_compressed_once_however_many_hosts_ask_at_once() {
        let cache = Arc::new(ChunkCache::new(CACHE_BYTES));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(h(1), 0, || async { Ok(vec![7u8; 100_000]) }).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        assert_eq!(cache.compressed(), 1);
        assert!(got.iter().all(|c| Arc::ptr_eq(c, &got[0])), "every host writes the same bytes");
        assert_eq!(zstd::decode_all(&got[0][..]).unwrap(), vec![7u8; 100_000]);
        // Another offset of the same blob (a resumed transfer) is its own chunk.
        cache.get(h(1), 4096, || async { Ok(vec![1u8; 10]) }).await.unwrap();
        assert_eq!(cache.compressed(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cache_stays_within_its_bound_dropping_the_least_recently_used() {
        // Incompressible 1000-byte chunks: about 1000 bytes each compressed.
        let noise = |seed: u8| {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
            (0..1000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<_>>()
        };
        let cache = ChunkCache::new(3500);
        for b in 0..3u8 {
            cache.get(h(b), 0, || async move { Ok(noise(b)) }).await.unwrap();
        }
        assert!(cache.lock().bytes > 3000, "incompressible: {}", cache.lock().bytes);
        // Touch blob 0, so blob 1 is the least recently used.
        cache.get(h(0), 0, || async { panic!("cached") }).await.unwrap();
        cache.get(h(3), 0, || async { Ok(noise(3)) }).await.unwrap();
        assert!(cache.lock().bytes <= 3500, "{}", cache.lock().bytes);
        cache.get(h(0), 0, || async { panic!("blob 0 was used recently: still cached") }).await.unwrap();
        let before = cache.compressed();
        cache.get(h(1), 0, || async { Ok(noise(1)) }).await.unwrap();
        assert_eq!(cache.compressed(), before + 1, "blob 1 was evicted and compressed again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_read_is_reported_and_not_cached() {
        let cache = ChunkCache::new(CACHE_BYTES);
        let err = cache
            .get(h(9), 0, || async { Err(HostError::Read { path: "/x".into(), error: "gone".into() }) })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("read /x: gone"), "{err}");
        cache.get(h(9), 0, || async { Ok(vec![1, 2, 3]) }).await.unwrap();
        assert_eq!(cache.compressed(), 1, "the retry compressed; the failure left nothing behind");
    }
}
