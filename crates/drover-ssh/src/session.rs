//! One SSH connection: connect (TCP, handshake with host-key check,
//! authentication — each with a deadline), then run commands on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hostkey::{self, Checker};
use crate::process::{self, Output, RemoteProcess};
use crate::{auth, keys, SshError, Target};

/// A connected, authenticated session. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle<Checker>>,
    addr: Arc<str>,
}

async fn within<T>(
    d: Duration,
    addr: &str,
    stage: &'static str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, SshError> {
    tokio::time::timeout(d, f).await.map_err(|_| SshError::Timeout { addr: addr.into(), stage })
}

impl Session {
    pub async fn connect(t: &Target) -> Result<Session, SshError> {
        let addr = t.addr();
        let parse_all = |lines: &[String]| {
            lines
                .iter()
                .map(|l| {
                    hostkey::parse(l).map_err(|reason| SshError::BadPinnedKey {
                        addr: addr.clone(),
                        line: l.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let pinned = parse_all(&t.host_keys)?;
        let authorities = parse_all(&t.cert_authorities)?;
        let has_pins = !pinned.is_empty();
        let expected: Vec<String> =
            pinned.iter().map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string()).collect();
        let offered = Arc::new(Mutex::new(None));
        let cert = Arc::new(Mutex::new(None));
        let with_certs = !authorities.is_empty();
        let checker =
            Checker { pinned, authorities, names: t.cert_names.clone(), offered: offered.clone(), cert: cert.clone() };
        // Before any deadline: a passphrase prompt waits for a person.
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
        let socket = within(t.timeouts.connect, &addr, "tcp connect", tokio::net::TcpStream::connect(&addr))
            .await?
            .map_err(|source| SshError::Connect { addr: addr.clone(), source })?;
        let _ = socket.set_nodelay(true);
        let handshake =
            within(t.timeouts.connect, &addr, "handshake", client::connect_stream(config, socket, checker)).await?;
        let mut handle = match handshake {
            Ok(h) => h,
            Err(e) => {
                let got = offered.lock().ok().and_then(|o| o.clone());
                let refused = cert.lock().ok().and_then(|c| c.clone()).and_then(|c| c.refused);
                return Err(match (got, e) {
                    (_, russh::Error::UnknownKey) if refused.is_some() && !has_pins => {
                        SshError::HostCertRefused { addr, reason: refused.unwrap_or_default() }
                    }
                    (Some(k), russh::Error::UnknownKey) => {
                        let got = k.fingerprint(russh::keys::HashAlg::Sha256).to_string();
                        if has_pins {
                            SshError::HostKeyMismatch { addr, expected, got }
                        } else {
                            SshError::HostKeyUnknown { addr, got }
                        }
                    }
                    (_, e) => SshError::from_russh(&addr, e),
                });
            }
        };
        within(t.timeouts.connect, &addr, "auth", auth::authenticate(&mut handle, t, keys, &addr)).await??;
        Ok(Session { handle: Arc::new(handle), addr: addr.into() })
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
