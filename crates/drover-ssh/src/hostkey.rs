//! Host-key pinning: the russh handler accepts a server key only if it is one
//! of the pinned keys, and remembers what it was offered so the error can show
//! both fingerprints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::SshError;

/// SHA256 fingerprint (`SHA256:…`), as `ssh-keygen -lf` prints it.
pub fn fingerprint(openssh_line: &str) -> Result<String, SshError> {
    let key = parse(openssh_line).map_err(|reason| SshError::BadPinnedKey {
        addr: String::new(),
        line: openssh_line.into(),
        reason,
    })?;
    Ok(key.fingerprint(HashAlg::Sha256).to_string())
}

pub(crate) fn parse(line: &str) -> Result<PublicKey, String> {
    let mut parts = line.split_whitespace();
    let (Some(alg), Some(b64)) = (parts.next(), parts.next()) else {
        return Err("expected \"<type> <base64>\"".into());
    };
    PublicKey::from_openssh(&format!("{alg} {b64}")).map_err(|e| e.to_string())
}

/// The russh client handler: checks the server key against the pins.
pub(crate) struct Checker {
    pub pinned: Vec<PublicKey>,
    /// The key the server presented (set during the handshake).
    pub offered: Arc<Mutex<Option<PublicKey>>>,
}

impl russh::client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            // Host certificates are not supported: pin the plain key.
            return Ok(false);
        };
        if let Ok(mut o) = self.offered.lock() {
            *o = Some(key.clone());
        }
        Ok(self.pinned.iter().any(|p| p.key_data() == key.key_data()))
    }
}

/// Connect just far enough to learn the server's host key (for `drover
/// trust`). No authentication is attempted.
pub async fn scan_host_key(address: &str, port: u16, timeout: Duration) -> Result<String, SshError> {
    let addr = crate::target::join_addr(address, port);
    let socket = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| SshError::Timeout { addr: addr.clone(), stage: "tcp connect" })?
        .map_err(|source| SshError::Connect { addr: addr.clone(), source })?;
    scan_over(socket, addr, timeout).await
}

/// [`scan_host_key`] for a target behind jump hosts: the hops' keys must
/// be pinned already (pin the first hop first, then the next: `drover
/// trust` goes hop by hop), and the hops are logged into with the target's
/// auth; the target itself is only scanned, not logged into.
pub async fn scan_host_key_through(t: &crate::Target) -> Result<String, SshError> {
    if t.proxy_jump.is_empty() {
        return scan_host_key(&t.address, t.port, t.timeouts.connect).await;
    }
    let addr = t.addr();
    let via = crate::jump::session(&t.proxy_jump, t).await?;
    let stream = crate::jump::forward(&via, &t.address, t.port, &addr, t.timeouts.connect).await?;
    scan_over(stream, addr, t.timeouts.connect).await
}

async fn scan_over<S>(stream: S, addr: String, timeout: Duration) -> Result<String, SshError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let offered = Arc::new(Mutex::new(None));
    let checker = Checker { pinned: vec![], offered: offered.clone() };
    let config = Arc::new(russh::client::Config::default());
    let socket = stream;
    // The handshake fails (we accept no key) once the key has been seen.
    let _ = tokio::time::timeout(timeout, russh::client::connect_stream(config, socket, checker)).await;
    let key = offered.lock().ok().and_then(|k| k.clone());
    match key {
        Some(k) => {
            let line =
                k.to_openssh().map_err(|e| SshError::Disconnected { addr: addr.clone(), reason: e.to_string() })?;
            Ok(line.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        }
        None => Err(SshError::Timeout { addr, stage: "handshake" }),
    }
}
