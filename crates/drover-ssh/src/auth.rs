//! Authentication in a fixed, documented order (docs/ssh.md): the target's
//! identities (with a certificate first when one is beside the key), then the
//! ssh-agent's other keys and certificates (unless `IdentitiesOnly`), then
//! the password. The first the server accepts wins.

use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg};

use crate::hostkey::Checker;
use crate::keys::{Keys, Prepared};
use crate::{SshError, Target};

pub(crate) async fn authenticate(
    h: &mut Handle<Checker>,
    t: &Target,
    mut keys: Keys,
    addr: &str,
) -> Result<(), SshError> {
    let user = t.user.clone();
    let net = |e: russh::Error| SshError::from_russh(addr, e);
    let mut tried: Vec<String> = Vec::new();
    // Public halves already offered, so the agent's copy is not offered again.
    let mut offered = Vec::new();
    for p in &keys.prepared {
        match p {
            Prepared::Loaded { key, cert, path } => {
                tried.push(format!("key {}{}", path.display(), if cert.is_some() { " (+certificate)" } else { "" }));
                offered.push(key.public_key().key_data().clone());
                if let Some(c) = cert {
                    if h.authenticate_openssh_cert(user.clone(), key.clone(), c.clone()).await.map_err(net)?.success() {
                        return Ok(());
                    }
                }
                let hash = rsa_hash(h, key.algorithm()).await?;
                let with = PrivateKeyWithHashAlg::new(key.clone(), hash);
                if h.authenticate_publickey(user.clone(), with).await.map_err(net)?.success() {
                    return Ok(());
                }
            }
            Prepared::InAgent { key, cert, path } => {
                tried.push(format!("key {} via ssh-agent", path.display()));
                offered.push(key.key_data().clone());
                let Some(agent) = keys.agent.as_mut() else { continue };
                let hash = rsa_hash(h, key.algorithm()).await?;
                if let Some(c) = cert {
                    if h.authenticate_certificate_with(user.clone(), c.clone(), hash, agent)
                        .await
                        .is_ok_and(|r| r.success())
                    {
                        return Ok(());
                    }
                }
                if h.authenticate_publickey_with(user.clone(), key.clone(), hash, agent)
                    .await
                    .is_ok_and(|r| r.success())
                {
                    return Ok(());
                }
            }
        }
    }
    if t.auth.agent {
        if let Some(agent) = keys.agent.as_mut() {
            let ids = std::mem::take(&mut keys.agent_ids);
            if !ids.is_empty() {
                tried.push(format!("{} ssh-agent identities", ids.len()));
            }
            for id in ids {
                let ok = match id {
                    AgentIdentity::PublicKey { key, .. } => {
                        if offered.contains(key.key_data()) {
                            continue;
                        }
                        let hash = rsa_hash(h, key.algorithm()).await?;
                        h.authenticate_publickey_with(user.clone(), key, hash, agent).await
                    }
                    AgentIdentity::Certificate { certificate, .. } => {
                        let hash = rsa_hash(h, certificate.algorithm()).await?;
                        h.authenticate_certificate_with(user.clone(), certificate, hash, agent).await
                    }
                };
                if ok.is_ok_and(|r| r.success()) {
                    return Ok(());
                }
            }
        } else if std::env::var_os("SSH_AUTH_SOCK").is_none() {
            tried.push("no ssh-agent (SSH_AUTH_SOCK unset)".into());
        }
    }
    if let Some(p) = &t.auth.password {
        tried.push("password".into());
        if password(h, &user, p.expose()).await.map_err(net)? {
            return Ok(());
        }
    }
    if let Some(locked) = keys.locked {
        return Err(locked);
    }
    if tried.is_empty() {
        tried.push("nothing: no key, agent or password".into());
    }
    Err(SshError::AuthFailed { addr: addr.into(), user, tried: tried.join(", ") })
}

/// rsa-sha2-512 or -256 as the server allows (never SHA-1 when it offers SHA-2).
async fn rsa_hash(h: &Handle<Checker>, alg: Algorithm) -> Result<Option<HashAlg>, SshError> {
    if !alg.is_rsa() {
        return Ok(None);
    }
    Ok(h.best_supported_rsa_hash().await.map_err(|e| SshError::Channel { addr: String::new(), source: e })?.flatten())
}

async fn password(h: &mut Handle<Checker>, user: &str, p: &str) -> Result<bool, russh::Error> {
    if h.authenticate_password(user.to_string(), p).await?.success() {
        return Ok(true);
    }
    // Some servers only take passwords as keyboard-interactive answers.
    let mut resp = h.authenticate_keyboard_interactive_start(user.to_string(), None::<String>).await?;
    for _ in 0..3 {
        match resp {
            client::KeyboardInteractiveAuthResponse::Success => return Ok(true),
            client::KeyboardInteractiveAuthResponse::Failure { .. } => break,
            client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| p.to_string()).collect();
                resp = h.authenticate_keyboard_interactive_respond(answers).await?;
            }
        }
    }
    Ok(false)
}
