//! One SSH connection: connect (TCP, handshake with host-key check,
//! authentication — each with a deadline), then run commands on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hostkey::{self, Checker};
use crate::process::{self, Output, RemoteProcess};
use crate::{jump, Auth, SshError, Target};

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
    t.host_keys
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
    let has_pins = !pinned.is_empty();
    let expected: Vec<String> =
        pinned.iter().map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string()).collect();
    let offered = Arc::new(Mutex::new(None));
    let checker = Checker { pinned, offered: offered.clone() };
    let config = Arc::new(client::Config {
        // Generous windows: a deploy streams MiBs over links with latency.
        window_size: 16 << 20,
        keepalive_interval: Some(t.timeouts.keepalive),
        keepalive_max: t.timeouts.keepalive_max,
        nodelay: true,
        ..Default::default()
    });
    let handshake =
        within(t.timeouts.connect, addr, "handshake", client::connect_stream(config, stream, checker)).await?;
    let mut handle = match handshake {
        Ok(h) => h,
        Err(e) => {
            let got = offered.lock().ok().and_then(|o| o.clone());
            return Err(match (got, e) {
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
    within(t.timeouts.connect, addr, "auth", authenticate(&mut handle, t, addr)).await??;
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

async fn authenticate(h: &mut Handle<Checker>, t: &Target, addr: &str) -> Result<(), SshError> {
    let user = t.user.clone();
    let fail = |method| SshError::AuthFailed { addr: addr.into(), user: user.clone(), method };
    let net = |e: russh::Error| SshError::from_russh(addr, e);
    match &t.auth {
        Auth::Key { path, passphrase } => {
            let key = russh::keys::load_secret_key(path, passphrase.as_ref().map(|p| p.expose()))
                .map_err(|e| SshError::KeyLoad { path: path.clone(), reason: e.to_string() })?;
            let hash =
                if key.algorithm().is_rsa() { h.best_supported_rsa_hash().await.map_err(net)?.flatten() } else { None };
            let res = h
                .authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(net)?;
            if res.success() {
                Ok(())
            } else {
                Err(fail("public key"))
            }
        }
        Auth::Password(p) => {
            if h.authenticate_password(user.clone(), p.expose()).await.map_err(net)?.success() {
                return Ok(());
            }
            // Some servers only take passwords as keyboard-interactive answers.
            let mut resp =
                h.authenticate_keyboard_interactive_start(user.clone(), None::<String>).await.map_err(net)?;
            for _ in 0..3 {
                match resp {
                    client::KeyboardInteractiveAuthResponse::Success => return Ok(()),
                    client::KeyboardInteractiveAuthResponse::Failure { .. } => break,
                    client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                        let answers = prompts.iter().map(|_| p.expose().to_string()).collect();
                        resp = h.authenticate_keyboard_interactive_respond(answers).await.map_err(net)?;
                    }
                }
            }
            Err(fail("password"))
        }
        Auth::Agent => {
            let agent_err = |e: russh::keys::Error| SshError::Agent { addr: addr.into(), reason: e.to_string() };
            let mut agent = russh::keys::agent::client::AgentClient::connect_env().await.map_err(agent_err)?;
            let ids = agent.request_identities().await.map_err(agent_err)?;
            for id in ids {
                let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else { continue };
                let hash = if key.algorithm().is_rsa() {
                    h.best_supported_rsa_hash().await.map_err(net)?.flatten()
                } else {
                    None
                };
                if let Ok(r) = h.authenticate_publickey_with(user.clone(), key, hash, &mut agent).await {
                    if r.success() {
                        return Ok(());
                    }
                }
            }
            Err(fail("ssh-agent keys"))
        }
    }
}
