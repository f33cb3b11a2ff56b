//! Host-key pinning: the russh handler accepts a server key only if it is one
//! of the pinned keys, and remembers what it was offered so the error can show
//! both fingerprints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, EcdsaCurve, HashAlg, PublicKey, PublicKeyOrCertificate};

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

/// The russh client handler: checks the server key against the pins, or its
/// host certificate against the trusted certificate authorities.
pub(crate) struct Checker {
    pub pinned: Vec<PublicKey>,
    /// `@cert-authority` keys trusted for this host.
    pub authorities: Vec<PublicKey>,
    /// Names a certificate's principals must include one of.
    pub names: Vec<String>,
    /// The key the server presented (set during the handshake).
    pub offered: Arc<Mutex<Option<PublicKey>>>,
    /// What the server's certificate was and why it was refused, if it was.
    pub cert: Arc<Mutex<Option<CertSeen>>>,
}

/// A host certificate as the server presented it.
#[derive(Debug, Clone)]
pub struct CertSeen {
    /// The certified host key, `type base64`.
    pub key: String,
    pub key_id: String,
    /// SHA256 fingerprint of the CA that signed it.
    pub ca: String,
    pub principals: Vec<String>,
    /// Why it was not accepted (None: it was, or it was not judged).
    pub refused: Option<String>,
}

impl CertSeen {
    fn of(cert: &Certificate) -> CertSeen {
        let key = PublicKey::new(cert.public_key().clone(), "");
        CertSeen {
            key: key.to_openssh().map(|l| base_line(&l)).unwrap_or_default(),
            key_id: cert.key_id().to_string(),
            ca: cert.signature_key().fingerprint(HashAlg::Sha256).to_string(),
            principals: cert.valid_principals().to_vec(),
            refused: None,
        }
    }
}

fn base_line(l: &str) -> String {
    l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Why `cert` is not a valid host certificate for `names` from one of
/// `authorities`; None when it is.
pub(crate) fn judge(cert: &Certificate, authorities: &[PublicKey], names: &[String]) -> Option<String> {
    if cert.cert_type() != CertType::Host {
        return Some("it is a user certificate, not a host certificate".into());
    }
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    let trusted: Vec<_> = authorities.iter().map(|a| a.fingerprint(HashAlg::Sha256)).collect();
    if !trusted.contains(&ca) {
        let listed = trusted.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
        return Some(format!(
            "signed by CA {ca}, which is not trusted for this host (trusted: {}); add its @cert-authority line (`drover trust --ca`) or pin the host key",
            if listed.is_empty() { "none" } else { &listed }
        ));
    }
    if cert.validate(trusted.iter()).is_err() {
        return Some(format!("signed by CA {ca} but invalid (bad signature, or outside its validity period)"));
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| names.contains(p)) {
        return Some(format!("valid for {} but not for this host ({})", principals.join(", "), names.join(", ")));
    }
    None
}

impl russh::client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                let mut seen = CertSeen::of(cert);
                seen.refused = judge(cert, &self.authorities, &self.names);
                let ok = seen.refused.is_none();
                if let Ok(mut c) = self.cert.lock() {
                    *c = Some(seen);
                }
                if ok {
                    return Ok(true);
                }
                // A certified key that is also pinned is still this host.
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        if let Ok(mut o) = self.offered.lock() {
            *o = Some(key.clone());
        }
        Ok(self.pinned.iter().any(|p| p.key_data() == key.key_data()))
    }
}

/// Host-key algorithms to ask a server's certificate for, when the target
/// trusts a certificate authority (a server with a certificate then shows
/// it in preference to its bare key).
pub(crate) fn preferred(with_certs: bool) -> russh::Preferred {
    const CERTS: &[Algorithm] = &[
        Algorithm::Ed25519,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
        Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
        Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
    ];
    let mut p = russh::Preferred::default();
    if with_certs {
        p.host_key_certificates = std::borrow::Cow::Borrowed(CERTS);
    }
    p
}

/// Connect just far enough to learn the server's host key (for `drover
/// trust`). No authentication is attempted.
pub async fn scan_host_key(address: &str, port: u16, timeout: Duration) -> Result<String, SshError> {
    Ok(scan(address, port, timeout, false).await?.key)
}

/// What a server presents: its key, and its host certificate when it has one.
#[derive(Debug, Clone)]
pub struct Scan {
    pub key: String,
    pub certificate: Option<CertSeen>,
}

/// [`scan_host_key`], asking for a host certificate too (for `drover trust`).
pub async fn scan_host(address: &str, port: u16, timeout: Duration) -> Result<Scan, SshError> {
    scan(address, port, timeout, true).await
}

async fn scan(address: &str, port: u16, timeout: Duration, certs: bool) -> Result<Scan, SshError> {
    let addr = crate::target::join_addr(address, port);
    let socket = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| SshError::Timeout { addr: addr.clone(), stage: "tcp connect" })?
        .map_err(|source| SshError::Connect { addr: addr.clone(), source })?;
    scan_over(socket, addr, timeout, certs).await
}

/// [`scan_host`] for a target behind jump hosts: the hops' keys must
/// be pinned already (pin the first hop first, then the next: `drover
/// trust` goes hop by hop), and the hops are logged into with the target's
/// auth; the target itself is only scanned, not logged into.
pub async fn scan_host_key_through(t: &crate::Target) -> Result<Scan, SshError> {
    if t.proxy_jump.is_empty() {
        return scan_host(&t.address, t.port, t.timeouts.connect).await;
    }
    let addr = t.addr();
    let via = crate::jump::session(&t.proxy_jump, t).await?;
    let stream = crate::jump::forward(&via, &t.address, t.port, &addr, t.timeouts.connect).await?;
    scan_over(stream, addr, t.timeouts.connect, true).await
}

async fn scan_over<S>(stream: S, addr: String, timeout: Duration, certs: bool) -> Result<Scan, SshError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let offered = Arc::new(Mutex::new(None));
    let cert = Arc::new(Mutex::new(None));
    let checker =
        Checker { pinned: vec![], authorities: vec![], names: vec![], offered: offered.clone(), cert: cert.clone() };
    let config = Arc::new(russh::client::Config { preferred: preferred(certs), ..Default::default() });
    // The handshake fails (we accept no key) once the key has been seen.
    let _ = tokio::time::timeout(timeout, russh::client::connect_stream(config, stream, checker)).await;
    let key = offered.lock().ok().and_then(|k| k.clone());
    let certificate = cert.lock().ok().and_then(|c| c.clone()).map(|mut c| {
        c.refused = None;
        c
    });
    match key {
        Some(k) => {
            let line =
                k.to_openssh().map_err(|e| SshError::Disconnected { addr: addr.clone(), reason: e.to_string() })?;
            Ok(Scan { key: base_line(&line), certificate })
        }
        None => Err(SshError::Timeout { addr, stage: "handshake" }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    fn keygen(dir: &Path, name: &str) -> PathBuf {
        let key = dir.join(name);
        let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
        assert!(ok.success());
        key
    }

    /// `ssh-keygen -s ca …` over `key`'s public half; the certificate.
    fn sign(ca: &Path, key: &Path, host: bool, principals: &str) -> Certificate {
        let mut c = Command::new("ssh-keygen");
        c.args(["-q", "-s"]).arg(ca).args(["-I", "test"]);
        if host {
            c.arg("-h");
        }
        if !principals.is_empty() {
            c.args(["-n", principals]);
        }
        assert!(c.arg(key.with_extension("pub")).status().unwrap().success());
        let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
        Certificate::from_openssh(&std::fs::read_to_string(cert).unwrap()).unwrap()
    }

    fn public(key: &Path) -> PublicKey {
        parse(&std::fs::read_to_string(key.with_extension("pub")).unwrap()).unwrap()
    }

    #[test]
    fn a_host_certificate_is_judged_by_its_ca_type_and_principals() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, other) = (keygen(dir.path(), "ca"), keygen(dir.path(), "other"));
        let host = keygen(dir.path(), "host");
        let trusted = [public(&ca)];
        let names = ["h1".to_string(), "10.0.0.1".to_string()];

        assert_eq!(judge(&sign(&ca, &host, true, "h1,10.0.0.1"), &trusted, &names), None);
        assert_eq!(judge(&sign(&ca, &host, true, ""), &trusted, &names), None, "no principals: any host");
        let why = judge(&sign(&other, &host, true, "h1"), &trusted, &names).unwrap();
        assert!(why.contains("not trusted") && why.contains("SHA256:"), "{why}");
        let why = judge(&sign(&ca, &host, true, "h2"), &trusted, &names).unwrap();
        assert!(why.contains("valid for h2 but not for this host"), "{why}");
        let why = judge(&sign(&ca, &host, false, "h1"), &trusted, &names).unwrap();
        assert!(why.contains("user certificate"), "{why}");
    }
}
