//! Shipping blobs as deltas (see [`super::delta`]): which blobs go as
//! deltas, sending them, asking which failed and sending those whole, and
//! keeping what was shipped as the next release's bases.

use std::collections::HashMap;

use drover_proto::{Hash, Request, Response};
use drover_spec::{BlobSource, Compiled};

use super::delta::{self, Delta};
use super::error::HostError;
use super::report::HostReport;
use super::ship::Shipper;
use crate::progress::HostProgress;
use crate::transport::Connection;

/// A blob to send as a delta: (blob, base, delta).
pub(crate) type Planned = (Hash, Hash, Delta);

impl Shipper<'_> {
    /// Split `direct` ((blob, bytes the host has) pairs) into deltas (a base
    /// in `bases`, held here too, nothing received yet) and whole blobs.
    pub(crate) async fn plan_deltas(
        &self,
        c: &Compiled,
        direct: &[(Hash, u64)],
        bases: &[(Hash, Hash)],
    ) -> Result<(Vec<Planned>, Vec<(Hash, u64)>), HostError> {
        let bases: HashMap<Hash, Hash> = bases.iter().copied().collect();
        let (mut deltas, mut whole) = (Vec::new(), Vec::new());
        for &(hash, have) in direct {
            let base = bases.get(&hash).filter(|_| have == 0);
            match base {
                Some(&base) => match self.delta(c, base, hash).await? {
                    Some(d) => deltas.push((hash, base, d)),
                    None => whole.push((hash, have)),
                },
                None => whole.push((hash, have)),
            }
        }
        Ok((deltas, whole))
    }

    /// The delta from `base` to `target`, if the controller holds `base`
    /// and the delta is smaller than the file.
    async fn delta(&self, c: &Compiled, base: Hash, target: Hash) -> Result<Option<Delta>, HostError> {
        let Some(src) = c.blobs.get(&target) else { return Ok(None) };
        let Some(base_path) = self.source.delta_base(&base) else { return Ok(None) };
        self.chunks
            .deltas
            .get(base, target, || {
                let old = std::fs::read(&base_path).map_err(|e| read_error(&base_path, e))?;
                let new = match src {
                    BlobSource::Bytes(b) => b.to_vec(),
                    BlobSource::File(path) => std::fs::read(path).map_err(|e| read_error(path, e))?,
                };
                // A base must be what the host holds, a file what was
                // compiled: either changed on disk since, no delta.
                let fits = delta::eligible(old.len() as u64) && delta::eligible(new.len() as u64);
                if !fits || blake3::hash(&old).as_bytes() != &base.0 || blake3::hash(&new).as_bytes() != &target.0 {
                    return Ok(None);
                }
                let d = delta::encode(&old, &new).map_err(HostError::Compress)?;
                Ok((d.len() < new.len()).then_some(d))
            })
            .await
    }

    /// Queue the deltas (pipelined, like chunks).
    pub(crate) async fn send_deltas(
        &self,
        conn: &mut Connection,
        c: &Compiled,
        deltas: &[Planned],
        r: &mut HostReport,
        p: &HostProgress,
    ) -> Result<(), HostError> {
        for (i, (hash, base, d)) in deltas.iter().enumerate() {
            p.step(format!("sending {}/{} deltas", i + 1, deltas.len()));
            for part in delta::parts(*hash, *base, d) {
                let n = part.data.len() as u64;
                conn.link.send(&Request::Delta(part)).await?;
                r.bytes_sent += n;
                p.sent(n);
            }
            r.deltas_sent += 1;
            self.keep_base(c, hash);
        }
        Ok(())
    }

    /// After the deltas: ask which blobs the host still lacks (a delta that
    /// did not apply or verify), and send those whole.
    pub(crate) async fn settle_deltas(
        &self,
        conn: &mut Connection,
        c: &Compiled,
        deltas: &[Planned],
        r: &mut HostReport,
        p: &HostProgress,
    ) -> Result<(), HostError> {
        let blobs = deltas.iter().map(|(h, _, _)| *h).collect();
        conn.link.flush().await?;
        let (missing, failed) = match conn.link.call(&Request::Missing { blobs }, &mut |_| {}).await? {
            Response::Missing { missing, failed } => (missing, failed),
            other => return Err(HostError::unexpected("Missing", &other)),
        };
        r.delta_failed.extend(failed.iter().map(|(h, why)| format!("{}: {why}; sent whole", h.short())));
        for (i, (hash, have)) in missing.iter().enumerate() {
            p.step(format!("sending {}/{} blobs whose deltas failed", i + 1, missing.len()));
            self.blob(conn, c, hash, *have, r, p).await?;
        }
        Ok(())
    }

    /// Keep the content of `hash` as a base for the next release's deltas,
    /// once per run, when it is of a delta's size. Never fails a run.
    pub(crate) fn keep_base(&self, c: &Compiled, hash: &Hash) {
        // Once per blob and run, from memory: a first apply of many small
        // files to many hosts costs no stat per file and host.
        if !self.chunks.deltas.first_keep(*hash) {
            return;
        }
        let Some(src) = c.blobs.get(hash) else { return };
        let size = match src {
            BlobSource::Bytes(b) => b.len() as u64,
            BlobSource::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
        };
        if delta::eligible(size) {
            tokio::task::block_in_place(|| self.source.keep_base(hash, src));
        }
    }
}

fn read_error(path: &std::path::Path, e: std::io::Error) -> HostError {
    HostError::Read { path: path.display().to_string(), error: e.to_string() }
}
