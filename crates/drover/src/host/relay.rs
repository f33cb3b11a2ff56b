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

use drover_proto::Hash;
use drover_spec::Host;

/// How often a waiting host looks for a free source again (it is also woken
/// whenever a transfer ends).
pub(super) const POLL: Duration = Duration::from_millis(250);

/// How often a session waiting for a peer pings its agent.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(2);
/// Peer transfers tried before falling back to the controller.
pub(super) const PEER_ATTEMPTS: u32 = 3;

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
    pub(super) wake: tokio::sync::Notify,
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

pub(super) enum Plan {
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

    pub(super) fn plan(&self, h: &Hash) -> Plan {
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
    pub(super) fn ended(&self, h: &Hash, from: Option<&str>, failed: bool, new_source: Option<String>) {
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

    pub(super) fn peer_addr(&self, host: &Host) -> String {
        if host.address.contains(':') {
            format!("[{}]:{}", host.address, self.port)
        } else {
            format!("{}:{}", host.address, self.port)
        }
    }
}
