//! Jump hosts (`ProxyJump`): one authenticated session per chain of hops,
//! shared by every target behind it.
//!
//! A target behind `a,b` is reached by a session to `a` (TCP), a session to
//! `b` over a `direct-tcpip` channel of `a`'s, and the target's own session
//! over a `direct-tcpip` channel of `b`'s. The sessions to `a` and to `a,b`
//! live in a process-wide pool keyed by the chain, so 500 hosts behind one
//! bastion cost one bastion login, not 500: each target opens only a channel
//! on it. Opens are concurrent; the first caller for a chain logs in while
//! the others wait for that one session (and, if that login fails, get its
//! failure rather than each trying again in turn). A session that has died (bastion
//! restarted, link cut, keepalives unanswered) is replaced on the next open.
//!
//! What bounds the sharing: OpenSSH's `MaxSessions` counts only session
//! channels (shells, commands), not `direct-tcpip` ones, and `MaxStartups`
//! counts only unauthenticated connections, which one shared login avoids.
//! Channels are multiplexed on one TCP connection with per-channel windows,
//! so the bastion's one connection carries every target's bytes: its
//! bandwidth and its sshd process's CPU (one process does the crypto for all
//! targets' streams) are the limits. See docs/jump-hosts.md.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use russh::client::Handle;

use crate::hostkey::Checker;
use crate::session::{establish, tcp, within};
use crate::{Hop, SshError, Target};

/// A live session to one hop, and the session it travels through (kept
/// alive as long as this one is).
pub(crate) struct Link {
    handle: Handle<Checker>,
    /// `user@address:port`, for errors.
    label: String,
    _via: Option<Arc<Link>>,
}

/// One chain's session, and how the last login to it went.
#[derive(Default)]
struct Slot {
    /// Logins failed so far; read before waiting for `state`, so a waiter
    /// can tell that a login failed while it waited.
    attempts: AtomicU64,
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    link: Option<Arc<Link>>,
    /// The last login's failure (message, transient), until one succeeds.
    failed: Option<(String, bool)>,
}

/// Sessions by chain of hops (user, address, port and pins of each).
static POOL: LazyLock<Mutex<HashMap<Vec<Hop>, Arc<Slot>>>> = LazyLock::new(Default::default);

/// The session to the last of `hops`, through the ones before it: the
/// pooled one if it is alive, else a new login. An error names the hop.
pub(crate) async fn session(hops: &[Hop], t: &Target) -> Result<Arc<Link>, SshError> {
    let slot = POOL.lock().expect("jump pool lock").entry(hops.to_vec()).or_default().clone();
    let seen = slot.attempts.load(Ordering::Acquire);
    let mut held = slot.state.lock().await;
    if let Some(link) = held.link.as_ref().filter(|l| !l.handle.is_closed()) {
        return Ok(link.clone());
    }
    // A login failed while this caller waited for it: every host behind a
    // dead bastion gets that failure now, instead of each trying again in
    // turn (500 hosts × a 10 s connect timeout, one after another).
    if let Some((message, transient)) = held.failed.as_ref().filter(|_| slot.attempts.load(Ordering::Acquire) > seen) {
        return Err(SshError::JumpShared { message: message.clone(), transient: *transient });
    }
    let result = login(hops, t).await;
    match &result {
        Ok(link) => *held = SlotState { link: Some(link.clone()), failed: None },
        Err(e) => {
            *held = SlotState { link: None, failed: Some((e.to_string(), e.is_transient())) };
            // Counted once it has failed: whoever was waiting shares it.
            slot.attempts.fetch_add(1, Ordering::AcqRel);
        }
    }
    result
}

/// A new session to the last of `hops` (through the pooled ones before it).
async fn login(hops: &[Hop], t: &Target) -> Result<Arc<Link>, SshError> {
    let (hop, before) = hops.split_last().expect("a chain has at least one hop");
    let as_target = Target {
        address: hop.address.clone(),
        port: hop.port,
        user: hop.user.clone(),
        auth: t.auth.clone(),
        host_keys: hop.host_keys.clone(),
        timeouts: t.timeouts,
        proxy_jump: Vec::new(),
    };
    let addr = as_target.addr();
    let at_hop = |e: SshError| match e {
        e @ (SshError::Jump { .. } | SshError::Forward { .. }) => e,
        e => SshError::Jump { hop: hop.label(), n: hops.len(), of: t.proxy_jump.len(), source: Box::new(e) },
    };
    let (handle, via) = if before.is_empty() {
        let socket = tcp(&as_target, &addr).await.map_err(at_hop)?;
        (establish(&as_target, &addr, socket).await.map_err(at_hop)?, None)
    } else {
        let prev = Box::pin(session(before, t)).await?;
        let stream = forward(&prev, &hop.address, hop.port, &addr, t.timeouts.connect).await?;
        (establish(&as_target, &addr, stream).await.map_err(at_hop)?, Some(prev))
    };
    tracing::debug!(hop = %hop.label(), "jump host session up");
    Ok(Arc::new(Link { handle, label: hop.label(), _via: via }))
}

/// A `direct-tcpip` channel from `via`'s host to `address:port`, as a
/// byte stream. Refused or unreachable: [`SshError::Forward`], naming both.
pub(crate) async fn forward(
    via: &Link,
    address: &str,
    port: u16,
    addr: &str,
    deadline: Duration,
) -> Result<russh::ChannelStream<russh::client::Msg>, SshError> {
    let open = via.handle.channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0);
    let via_name = || via.label.clone();
    match within(deadline, addr, "jump channel open", open).await {
        Ok(Ok(ch)) => Ok(ch.into_stream()),
        Ok(Err(e)) => Err(SshError::Forward { via: via_name(), to: addr.into(), reason: forward_reason(e) }),
        Err(_) => Err(SshError::Forward { via: via_name(), to: addr.into(), reason: "no answer in time".into() }),
    }
}

/// What a failed channel open means, in words that say where to look.
fn forward_reason(e: russh::Error) -> String {
    use russh::ChannelOpenFailure as F;
    match e {
        russh::Error::ChannelOpenFailure(F::ConnectFailed) => {
            "the jump host could not connect to it (down, or no route from the jump host)".into()
        }
        russh::Error::ChannelOpenFailure(F::AdministrativelyProhibited) => {
            "the jump host refuses forwarding (its sshd has AllowTcpForwarding no, or PermitOpen excludes it)".into()
        }
        russh::Error::ChannelOpenFailure(F::ResourceShortage) => "the jump host is out of resources".into(),
        other => other.to_string(),
    }
}
