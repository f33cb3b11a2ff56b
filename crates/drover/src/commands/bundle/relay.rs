//! Peer relay, the controller's side: which host gets a large blob from
//! where, so that each one leaves the controller about once.
//!
//! Per blob, the first host that needs it is its *seed*: the controller sends
//! it over SSH as usual. A host that holds a blob is asked to serve it
//! (`RelayServe`: a detached server on the host, see `drover-agent`'s relay
//! module) and becomes a *source*. Every other host that needs the blob
//! waits for a source with a free slot (at most `fanout` transfers each) and
//! fetches from it (`RelayFetch`), verified by hash, then serves it too. The
//! sources grow as the blob spreads, like a tree whose width doubles each
//! round. A failed peer transfer is retried from another source, and after
//! three failures the host takes the blob from the controller.
//!
//! Small blobs (below `min_size`) are not worth a round trip: they go over
//! SSH directly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use drover_proto::{EntryKind, Hash, Request, Response};
use drover_spec::{Compiled, Host};

use crate::deploy::DeployError;
use crate::link::LinkError;
use crate::progress::HostProgress;
use crate::report::HostReport;
use crate::ship::Shipper;
use crate::transport::Connection;

/// How often a waiting host looks for a free source again (it is also woken
/// whenever a transfer ends).
const POLL: Duration = Duration::from_millis(250);

/// How often a session waiting for a peer pings its agent.
const KEEPALIVE: Duration = Duration::from_secs(2);
/// Peer transfers tried before falling back to the controller.
const PEER_ATTEMPTS: u32 = 3;

pub struct Relay {
    pub port: u16,
    /// The run's relay secret: travels to hosts over SSH only; peers prove
    /// they know it by answering a per-connection challenge.
    pub secret: String,
    pub min_size: u64,
    pub fanout: usize,
    /// A host's relay server exits after this long without a request.
    pub idle_ms: u64,
    blobs: Mutex<HashMap<Hash, BlobState>>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct BlobState {
    seeding: bool,
    sources: Vec<Source>,
}

struct Source {
    addr: String,
    busy: usize,
    failures: u32,
}

enum Plan {
    Seed,
    From(String),
    Wait,
}

impl Relay {
    pub fn new(port: u16, min_size: u64, fanout: usize, idle_ms: u64) -> anyhow::Result<Relay> {
        let mut raw = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut raw)?;
        Ok(Relay {
            port,
            secret: raw.iter().map(|b| format!("{b:02x}")).collect(),
            min_size,
            fanout: fanout.max(1),
            idle_ms,
            blobs: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn plan(&self, h: &Hash) -> Plan {
        let mut all = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        let st = all.entry(*h).or_default();
        let free = st.sources.iter_mut().filter(|s| s.busy < self.fanout && s.failures < 2).min_by_key(|s| s.busy);
        if let Some(s) = free {
            s.busy += 1;
            return Plan::From(s.addr.clone());
        }
        if !st.seeding && st.sources.iter().all(|s| s.failures >= 2) {
            st.seeding = true;
            return Plan::Seed;
        }
        Plan::Wait
    }

    /// A transfer ended: free the source's slot (counting a failure), and add
    /// the receiving host as a new source if it serves now.
    fn ended(&self, h: &Hash, from: Option<&str>, failed: bool, new_source: Option<String>) {
        let mut all = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        let st = all.entry(*h).or_default();
        match from {
            Some(addr) => {
                if let Some(s) = st.sources.iter_mut().find(|s| s.addr == addr) {
                    s.busy = s.busy.saturating_sub(1);
                    s.failures += u32::from(failed);
                }
            }
            // The seed failed: let another host seed.
            None if failed => st.seeding = false,
            None => {}
        }
        if let Some(addr) = new_source {
            if !st.sources.iter().any(|s| s.addr == addr) {
                st.sources.push(Source { addr, busy: 0, failures: 0 });
            }
        }
        drop(all);
        self.wake.notify_waiters();
    }

    fn peer_addr(&self, host: &Host) -> String {
        if host.address.contains(':') {
            format!("[{}]:{}", host.address, self.port)
        } else {
            format!("{}:{}", host.address, self.port)
        }
    }

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
    ) -> Result<Vec<(Hash, u64)>, DeployError> {
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
    ) -> Result<bool, DeployError> {
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
                            return Err(DeployError::Other(format!("unexpected reply to RelayFetch: {other:?}")));
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
    async fn serve(&self, host: &Host, conn: &mut Connection, hash: Hash) -> Result<bool, DeployError> {
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
            Ok(other) => Err(DeployError::Other(format!("unexpected reply to RelayServe: {other:?}"))),
            // Cannot serve (port taken…): it still has the blob, just is no source.
            Err(LinkError::Agent(msg)) => {
                tracing::warn!("{}: relay server: {msg}", host.name);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
