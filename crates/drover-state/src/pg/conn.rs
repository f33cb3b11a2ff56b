//! One PostgreSQL connection, owned by a thread of its own.
//!
//! Why a thread: the sync `postgres` client runs a small tokio runtime of
//! its own and panics when called from inside another runtime, and the
//! controller calls the store from async tasks (the fleet runner remembers
//! facts from each host's task; `drover serve` reads it per request). The
//! connection lives on a plain thread; callers send it closures and block
//! on the answer, exactly as they block on a SQLite call today.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use postgres::Client;

use crate::{redact_url, StateError};

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// What a job fails with: a database error (wrapped with the URL by
/// [`Conn::call`]) or a store-level answer such as [`StateError::Locked`].
pub(super) enum Fail {
    Pg(postgres::Error),
    State(StateError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<StateError> for Fail {
    fn from(e: StateError) -> Fail {
        Fail::State(e)
    }
}

/// A handle on the connection's thread; cloning it shares the connection
/// (the lease renewer uses a clone). The thread ends with the last handle.
#[derive(Clone)]
pub(super) struct Conn {
    tx: mpsc::Sender<Job>,
    /// The URL without its password, for every error.
    pub(super) url: Arc<str>,
}

impl Conn {
    pub(super) fn open(url: &str) -> Result<Conn, StateError> {
        let shown: Arc<str> = redact_url(url).into();
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| StateError::BadUrl { url: shown.to_string(), reason: e.to_string() })?;
        if config.get_connect_timeout().is_none() {
            // Fail fast when the server is down: the run has not touched a
            // host yet and the operator is waiting.
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls = tls().map_err(|reason| StateError::Connect { url: shown.to_string(), reason })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        std::thread::Builder::new()
            .name("drover-state-pg".into())
            .spawn(move || match config.connect(tls) {
                Ok(mut client) => {
                    let _ = ready_tx.send(Ok(()));
                    for job in rx {
                        job(&mut client);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(error_chain(&e)));
                }
            })
            .map_err(|e| StateError::Connect { url: shown.to_string(), reason: e.to_string() })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Conn { tx, url: shown }),
            Ok(Err(reason)) => Err(StateError::Connect { url: shown.to_string(), reason }),
            Err(_) => Err(StateError::Gone { url: shown.to_string() }),
        }
    }

    /// Run `f` on the connection and wait for its answer.
    pub(super) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, StateError> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let gone = || StateError::Gone { url: self.url.to_string() };
        self.tx
            .send(Box::new(move |c: &mut Client| {
                let _ = rtx.send(f(c));
            }))
            .map_err(|_| gone())?;
        match rrx.recv().map_err(|_| gone())? {
            Ok(v) => Ok(v),
            Err(Fail::Pg(source)) => Err(match crate::states::unknown_in(&source) {
                Some(u) => StateError::Unknown(u),
                None => StateError::Pg { url: self.url.to_string(), source },
            }),
            Err(Fail::State(e)) => Err(e),
        }
    }
}

/// `postgres::Error`'s own text is terse ("error connecting to server");
/// the cause (refused, timed out, bad password) is in its source.
fn error_chain(e: &postgres::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// TLS by rustls (ring): the server's certificate is checked against
/// Mozilla's roots plus, when `PGSSLROOTCERT` names a PEM file (libpq's
/// variable), the CAs in it. Whether TLS is used follows the URL's
/// `sslmode` (`disable`, `prefer`: the default, `require`).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os("PGSSLROOTCERT").filter(|p| !p.is_empty()) {
        let shown = std::path::Path::new(&path).display().to_string();
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(&path).map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))? {
            let cert = cert.map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
            roots.add(cert).map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("PGSSLROOTCERT {shown}: no PEM certificate in it (give the CA's certificate)"));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
