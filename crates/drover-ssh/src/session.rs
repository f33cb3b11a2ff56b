//! One SSH connection: connect (TCP, handshake with host-key check,
//! authentication — each with a deadline), then run commands on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hostkey::{self, Checker};
use crate::process::{self, Output, RemoteProcess};
use crate::{auth, jump, keys, SshError, Target};

/// A connected, authenticated session. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle<Checker>>,
    addr: Arc<str>,
    /// The last jump host's session, kept alive while this one uses a
    /// channel of it.
    _via: Option<Arc<jump::Link>>,
}

/// TCP to `t`, with its deadline.
pub(crate) async fn tcp(t: &Target, addr: &str) -> Result<tokio::net::TcpStream, SshError> {
    let socket = within(t.timeouts.connect, addr, "tcp connect", tokio::net::TcpStream::connect(addr))
        .await?
        .map_err(|source| SshError::Connect { addr: addr.into(), source })?;
    let _ = socket.set_nodelay(true);
    Ok(socket)
}

/// `t`'s pinned keys, parsed: a malformed one is a configuration error,
/// reported before anything is dialled.
fn pins(t: &Target, addr: &str) -> Result<Vec<russh::keys::PublicKey>, SshError> {
    parse_lines(&t.host_keys, addr)
}

/// OpenSSH public key lines (pins, CA keys), parsed.
fn parse_lines(lines: &[String], addr: &str) -> Result<Vec<russh::keys::PublicKey>, SshError> {
    lines
        .iter()
        .map(|l| {
            hostkey::parse(l).map_err(|reason| SshError::BadPinnedKey { addr: addr.into(), line: l.clone(), reason })
        })
        .collect()
}

/// The SSH handshake (host key checked against `t`'s pins) and
/// authentication as `t.user`, over `stream`: a TCP socket or a jump host's
/// channel.
pub(crate) async fn establish<S>(t: &Target, addr: &str, stream: S) -> Result<Handle<Checker>, SshError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let pinned = pins(t, addr)?;
    let authorities = parse_lines(&t.cert_authorities, addr)?;
    let has_pins = !pinned.is_empty();
    let expected: Vec<String> =
        pinned.iter().map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string()).collect();
    let offered = Arc::new(Mutex::new(None));
    let cert = Arc::new(Mutex::new(None));
    let with_certs = !authorities.is_empty();
    let checker =
        Checker { pinned, authorities, names: t.cert_names.clone(), offered: offered.clone(), cert: cert.clone() };
    // Before the handshake's deadline: a passphrase prompt waits for a person.
    let keys = keys::prepare(&t.auth).await?;
    let config = Arc::new(client::Config {
        // Generous windows: a deploy streams MiBs over links with latency.
        window_size: 16 << 20,
        keepalive_interval: Some(t.timeouts.keepalive),
        keepalive_max: t.timeouts.keepalive_max,
        nodelay: true,
        preferred: hostkey::preferred(with_certs),
        ..Default::default()
    });
    let handshake =
        within(t.timeouts.connect, addr, "handshake", client::connect_stream(config, stream, checker)).await?;
    let mut handle = match handshake {
        Ok(h) => h,
        Err(e) => {
            let got = offered.lock().ok().and_then(|o| o.clone());
            let refused = cert.lock().ok().and_then(|c| c.clone()).and_then(|c| c.refused);
            return Err(match (got, e) {
                (_, russh::Error::UnknownKey) if refused.is_some() && !has_pins => {
                    SshError::HostCertRefused { addr: addr.into(), reason: refused.unwrap_or_default() }
                }
                (Some(k), russh::Error::UnknownKey) => {
                    let got = k.fingerprint(russh::keys::HashAlg::Sha256).to_string();
                    if has_pins {
                        SshError::HostKeyMismatch { addr: addr.into(), expected, got }
                    } else {
                        SshError::HostKeyUnknown { addr: addr.into(), got }
                    }
                }
                (_, e) => SshError::from_russh(addr, e),
            });
        }
    };
    within(t.timeouts.connect, addr, "auth", auth::authenticate(&mut handle, t, keys, addr)).await??;
    Ok(handle)
}

pub(crate) async fn within<T>(
    d: Duration,
    addr: &str,
    stage: &'static str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, SshError> {
    tokio::time::timeout(d, f).await.map_err(|_| SshError::Timeout { addr: addr.into(), stage })
}

impl Session {
    /// Log in to `t`: over TCP, or through its jump hosts (one shared
    /// session per chain of hops, see [`crate::jump`]).
    pub async fn connect(t: &Target) -> Result<Session, SshError> {
        let addr = t.addr();
        pins(t, &addr)?;
        if t.proxy_jump.is_empty() {
            let socket = tcp(t, &addr).await?;
            let handle = establish(t, &addr, socket).await?;
            return Ok(Session { handle: Arc::new(handle), addr: addr.into(), _via: None });
        }
        let via = jump::session(&t.proxy_jump, t).await?;
        let stream = jump::forward(&via, &t.address, t.port, &addr, t.timeouts.connect).await?;
        let handle = establish(t, &addr, stream).await?;
        Ok(Session { handle: Arc::new(handle), addr: addr.into(), _via: Some(via) })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The connection is gone (the server closed it, or keepalives went
    /// unanswered): a session held between commands is replaced, not used.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Start `command` (no pty) and return its stdio.
    pub async fn exec(&self, command: &str) -> Result<RemoteProcess, SshError> {
        let ch = self.handle.channel_open_session().await.map_err(|e| SshError::from_russh(&self.addr, e))?;
        ch.exec(true, command).await.map_err(|e| SshError::from_russh(&self.addr, e))?;
        Ok(process::start(ch, self.addr.clone()))
    }

    /// Run `command` to completion with `stdin` as its input.
    pub async fn run(&self, command: &str, stdin: &[u8]) -> Result<Output, SshError> {
        let (mut w, mut r, exit) = self.exec(command).await?.into_parts();
        let feed = async {
            let res = w.write_all(stdin).await;
            let _ = w.shutdown().await;
            res
        };
        let mut stdout = Vec::new();
        let (fed, read) = tokio::join!(feed, r.read_to_end(&mut stdout));
        let lost = |e: std::io::Error| SshError::Disconnected { addr: self.addr.to_string(), reason: e.to_string() };
        fed.map_err(lost)?;
        read.map_err(lost)?;
        let info = exit.wait().await?;
        Ok(Output { code: info.code, stdout, stderr: info.stderr })
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}
