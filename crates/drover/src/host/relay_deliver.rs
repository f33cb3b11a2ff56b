//! A host's session receiving its large blobs through the relay: from a peer
//! with a free slot, else seeded from the controller, then served onwards.

use std::collections::HashMap;

use drover_proto::{EntryKind, Hash, Request, Response};
use drover_spec::{Compiled, Host};

use super::relay::{Plan, Relay, KEEPALIVE, PEER_ATTEMPTS, POLL};
use crate::host::error::HostError;
use crate::host::report::HostReport;
use crate::host::ship::Shipper;
use crate::progress::HostProgress;
use crate::transport::link::LinkError;
use crate::transport::Connection;

impl Relay {
    /// Deliver the large blobs of `missing` by relay; return the rest (small
    /// blobs, and any that must come from the controller after all).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn deliver(
        &self,
        ship: &Shipper<'_>,
        host: &Host,
        conn: &mut Connection,
        c: &Compiled,
        missing: &[(Hash, u64)],
        r: &mut HostReport,
        p: &HostProgress,
    ) -> Result<Vec<(Hash, u64)>, HostError> {
        let sizes: HashMap<Hash, u64> = c
            .manifest
            .entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { hash, size } => Some((hash, size)),
                EntryKind::Symlink { .. } | EntryKind::Dir => None,
            })
            // Packages' .deb files are blobs like any other.
            .chain(c.manifest.setup.packages.iter().map(|p| (p.hash, p.size)))
            .collect();
        let mut rest = Vec::new();
        for &(hash, have) in missing {
            let size = sizes.get(&hash).copied().unwrap_or(0);
            if size < self.min_size || !self.one(ship, host, conn, c, hash, have, size, r, p).await? {
                rest.push((hash, have));
            }
        }
        Ok(rest)
    }

    /// One large blob; `Ok(false)`: fall back to the controller.
    #[allow(clippy::too_many_arguments)]
    async fn one(
        &self,
        ship: &Shipper<'_>,
        host: &Host,
        conn: &mut Connection,
        c: &Compiled,
        hash: Hash,
        have: u64,
        size: u64,
        r: &mut HostReport,
        p: &HostProgress,
    ) -> Result<bool, HostError> {
        let mut failures = 0;
        let mut last_word = std::time::Instant::now();
        loop {
            // Register interest before planning, so a wake-up in between is
            // not lost.
            let woken = self.wake.notified();
            match self.plan(&hash) {
                Plan::Seed => {
                    p.step(format!("sending {} ({} MiB, relay seed)", hash.short(), size >> 20));
                    let sent = async {
                        ship.blob(conn, c, &hash, have, r, p).await?;
                        conn.link.flush().await?;
                        self.serve(host, conn, hash).await
                    }
                    .await;
                    match sent {
                        Ok(serving) => self.ended(&hash, None, !serving, serving.then(|| self.peer_addr(host))),
                        Err(e) => {
                            self.ended(&hash, None, true, None);
                            return Err(e);
                        }
                    }
                    return Ok(true);
                }
                Plan::From(addr) => {
                    p.step(format!("fetching {} ({} MiB) from peer {addr}", hash.short(), size >> 20));
                    let req = Request::RelayFetch {
                        peer: addr.clone(),
                        secret: self.secret.clone(),
                        blobs: vec![(hash, size)],
                    };
                    match conn.link.call(&req, &mut |m| p.step(m)).await {
                        Ok(Response::RelayFetched { .. }) => {
                            let serving = self.serve(host, conn, hash).await;
                            let me = matches!(serving, Ok(true)).then(|| self.peer_addr(host));
                            self.ended(&hash, Some(&addr), false, me);
                            serving?;
                            return Ok(true);
                        }
                        Ok(other) => {
                            self.ended(&hash, Some(&addr), true, None);
                            return Err(HostError::unexpected("RelayFetch", &other));
                        }
                        Err(LinkError::Agent(msg)) => {
                            self.ended(&hash, Some(&addr), true, None);
                            failures += 1;
                            p.step(format!("peer transfer failed: {msg}"));
                            if failures >= PEER_ATTEMPTS {
                                return Ok(false);
                            }
                        }
                        Err(e) => {
                            self.ended(&hash, Some(&addr), true, None);
                            return Err(e.into());
                        }
                    }
                }
                Plan::Wait => {
                    p.step(format!("waiting for a peer with {}", hash.short()));
                    // The host's agent holds its lock and ends a silent
                    // session (see `Request::Hello::idle_ms`): keep it alive.
                    if last_word.elapsed() >= KEEPALIVE {
                        conn.link.call(&Request::Ping, &mut |_| {}).await?;
                        last_word = std::time::Instant::now();
                    }
                    let _ = tokio::time::timeout(POLL, woken).await;
                }
            }
        }
    }

    /// Ask the host to serve `hash`; whether it does.
    async fn serve(&self, host: &Host, conn: &mut Connection, hash: Hash) -> Result<bool, HostError> {
        // The host listens on the address its peers reach it at, and takes
        // a few more connections than the controller schedules (a transfer
        // ending while the next begins), not an unbounded number.
        let req = Request::RelayServe {
            bind: host.address.clone(),
            port: self.port,
            secret: self.secret.clone(),
            blobs: vec![hash],
            idle_ms: self.idle_ms,
            max_conns: u32::try_from(self.fanout * 2).unwrap_or(u32::MAX),
        };
        match conn.link.call(&req, &mut |_| {}).await {
            Ok(Response::RelayServing { holding }) => Ok(holding.contains(&hash)),
            Ok(other) => Err(HostError::unexpected("RelayServe", &other)),
            // Cannot serve (port taken…): it still has the blob, just is no source.
            Err(LinkError::Agent(msg)) => {
                tracing::warn!("{}: relay server: {msg}", host.name);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
