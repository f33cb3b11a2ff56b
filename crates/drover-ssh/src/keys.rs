//! The keys a target logs in with, made ready before the connection's
//! deadlines start: a passphrase prompt waits for a person, and a key
//! decrypted once serves every host of the run.
//!
//! A passphrase-protected key is used through the ssh-agent when the agent
//! holds it (matched by its public half, which OpenSSH stores unencrypted);
//! otherwise the passphrase is asked once per run on the terminal and the
//! decrypted key kept in memory for the run (never written anywhere). A run
//! without a terminal cannot ask: the key is reported as locked, with the
//! advice to use an agent.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Certificate, PrivateKey, PublicKey};
use tokio::net::UnixStream;

use crate::{Auth, SshError};

/// One identity, ready to offer.
pub(crate) enum Prepared {
    /// The private key in memory.
    Loaded { key: Arc<PrivateKey>, cert: Option<Certificate>, path: PathBuf },
    /// The key is encrypted on disk and the agent holds it: the agent signs.
    InAgent { key: PublicKey, cert: Option<Certificate>, path: PathBuf },
}

/// Everything authentication needs, gathered before connecting.
pub(crate) struct Keys {
    pub prepared: Vec<Prepared>,
    pub agent: Option<AgentClient<UnixStream>>,
    /// The agent's identities (keys and certificates), in its order.
    pub agent_ids: Vec<AgentIdentity>,
    /// A key that could not be unlocked: the error if nothing else works.
    pub locked: Option<SshError>,
}

/// Keys decrypted this run, by path, so each passphrase is asked once.
type Unlocked = tokio::sync::Mutex<HashMap<PathBuf, Arc<PrivateKey>>>;

fn unlocked() -> &'static Unlocked {
    static CACHE: OnceLock<Unlocked> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

pub(crate) async fn prepare(auth: &Auth) -> Result<Keys, SshError> {
    let mut agent = match std::env::var_os("SSH_AUTH_SOCK") {
        Some(_) => AgentClient::connect_env().await.ok(),
        None => None,
    };
    let agent_ids = match agent.as_mut() {
        Some(a) => a.request_identities().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut keys = Keys { prepared: Vec::new(), agent: None, agent_ids, locked: None };
    for id in &auth.identities {
        if id.optional && !id.path.exists() {
            continue;
        }
        let cert = match id.certificate_path() {
            Some(p) => Some(russh::keys::load_openssh_certificate(&p).map_err(|e| SshError::KeyLoad {
                path: p.clone(),
                reason: format!("not an OpenSSH certificate: {e}"),
            })?),
            None => None,
        };
        // A certificate for another key (one `CertificateFile` for several
        // identities) is not offered with this one.
        let for_key = |k: &PublicKey| cert.clone().filter(|c| c.public_key() == k.key_data());
        match load(&id.path, &keys.agent_ids, agent.is_some()).await {
            Ok(Loaded::Key(key)) => {
                let cert = for_key(key.public_key());
                keys.prepared.push(Prepared::Loaded { key, cert, path: id.path.clone() })
            }
            Ok(Loaded::Agent(key)) => {
                let cert = for_key(&key);
                keys.prepared.push(Prepared::InAgent { key, cert, path: id.path.clone() })
            }
            Err(e @ SshError::KeyLocked { .. }) => {
                keys.locked.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    keys.agent = agent;
    Ok(keys)
}

enum Loaded {
    Key(Arc<PrivateKey>),
    Agent(PublicKey),
}

async fn load(path: &Path, agent_ids: &[AgentIdentity], has_agent: bool) -> Result<Loaded, SshError> {
    let mut cache = unlocked().lock().await;
    if let Some(k) = cache.get(path) {
        return Ok(Loaded::Key(k.clone()));
    }
    let key_load = |reason: String| SshError::KeyLoad { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| key_load(e.to_string()))?;
    let key = match PrivateKey::from_openssh(&text) {
        Ok(k) => k,
        // PEM (`BEGIN RSA PRIVATE KEY`) and PKCS#8 keys.
        Err(_) => russh::keys::decode_secret_key(&text, None).map_err(|e| key_load(e.to_string()))?,
    };
    if !key.is_encrypted() {
        let key = Arc::new(key);
        cache.insert(path.to_path_buf(), key.clone());
        return Ok(Loaded::Key(key));
    }
    let held = agent_ids.iter().any(|id| match id {
        AgentIdentity::PublicKey { key: k, .. } => k.key_data() == key.public_key().key_data(),
        AgentIdentity::Certificate { certificate, .. } => certificate.public_key() == key.public_key().key_data(),
    });
    if held {
        return Ok(Loaded::Agent(key.public_key().clone()));
    }
    if !interactive() {
        let agent = if has_agent { "the ssh-agent does not hold it" } else { "no ssh-agent runs" };
        return Err(SshError::KeyLocked {
            path: path.to_path_buf(),
            reason: format!("{agent}, and this run has no terminal to ask for its passphrase"),
        });
    }
    let prompt = format!("Enter passphrase for key {}: ", path.display());
    let pass = tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt))
        .await
        .map_err(|e| key_load(e.to_string()))?
        .map_err(|e| key_load(format!("cannot read the passphrase: {e}")))?;
    let pass = crate::Secret::new(pass);
    let key = Arc::new(key.decrypt(pass.expose()).map_err(|_| key_load("wrong passphrase".into()))?);
    cache.insert(path.to_path_buf(), key.clone());
    Ok(Loaded::Key(key))
}

/// A person can be asked: stdin is a terminal and the process has one.
fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}
