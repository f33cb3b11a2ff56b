//! Reaching an agent over SSH: log in, start the checked agent as root
//! (installing the one for the host's machine first when the host lacks it
//! or it fails its check; refusing a host of a machine no agent is carried
//! for, before any upload), and say hello. The bootstrap's shell scripts and what their exits mean are in
//! [`super::bootstrap`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_spec::Host;

use super::bootstrap::{self, AgentCheck};
use super::connection::{hello, Connection, Keep, Timeouts};
use super::error::TransportError;
use super::link::{AgentLink, LinkError};
use crate::agent_bin;

/// How drover logs in to `host` (auth, pins, CAs, jump hosts): also what
/// `drover trust` scans through.
pub fn ssh_target(host: &Host, t: Timeouts) -> drover_ssh::Target {
    let timeouts = drover_ssh::Timeouts {
        connect: host.ssh.connect_timeout.unwrap_or(t.connect),
        keepalive: host.ssh.server_alive_interval.unwrap_or(drover_ssh::Timeouts::default().keepalive),
        ..Default::default()
    };
    drover_ssh::Target {
        address: host.address.clone(),
        port: host.port,
        user: host.user.clone(),
        auth: auth(host),
        host_keys: host.host_keys.clone(),
        cert_authorities: host.ssh.cert_authorities.clone(),
        cert_names: vec![host.name.clone(), host.address.clone()],
        timeouts,
        proxy_jump: host
            .proxy_jump
            .iter()
            .map(|h| drover_ssh::Hop {
                user: h.user.clone(),
                address: h.address.clone(),
                port: h.port,
                host_keys: h.host_keys.clone(),
            })
            .collect(),
    }
}

/// The order of docs/ssh.md: the inventory's key, ssh_config's
/// `IdentityFile`s (or, when neither names one, the conventional
/// `~/.ssh/id_{ed25519,ecdsa,rsa}` that exist), then the ssh-agent's keys
/// unless `IdentitiesOnly`, then the password.
fn auth(host: &Host) -> drover_ssh::Auth {
    let cert = host.ssh.certificate_files.first().cloned();
    let identity =
        |path: &PathBuf, optional| drover_ssh::Identity { path: path.clone(), certificate: cert.clone(), optional };
    let mut identities: Vec<_> = host.auth.key.iter().map(|k| identity(k, false)).collect();
    // ssh skips an IdentityFile that does not exist; so does drover.
    identities.extend(host.ssh.identity_files.iter().map(|k| identity(k, true)));
    if identities.is_empty() {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            identities.push(identity(&home.join(".ssh").join(name), true));
        }
    }
    drover_ssh::Auth {
        identities,
        agent: !host.ssh.identities_only,
        password: host.auth.password.as_ref().map(|p| drover_ssh::Secret::new(p.clone())),
    }
}

/// The connection, and when the SSH session was up (the rest is `hello`).
pub(super) async fn connect_ssh(
    host: &Host,
    t: Timeouts,
    read_only: bool,
) -> Result<(Connection, Instant), TransportError> {
    let session = drover_ssh::Session::connect(&ssh_target(host, t)).await?;
    let connected = Instant::now();
    let serve = bootstrap::serve_command(&host.user);
    let password = if host.user == "root" { None } else { host.auth.password.as_deref() };
    for attempt in 0..2 {
        let proc = session.exec(&serve).await?;
        let (stdin, stdout, exit) = proc.into_parts();
        let link = AgentLink::start(stdin, stdout, password, t.op).await?;
        match hello(link, Keep::Ssh(session.clone()), read_only).await {
            Ok(c) => return Ok((c, connected)),
            Err(TransportError::Link(LinkError::Closed(_))) => {
                let info = exit.wait().await?;
                let stderr = String::from_utf8_lossy(&info.stderr).trim().to_string();
                let check = info.code.and_then(|c| AgentCheck::from_exit(c, &stderr));
                let failed = matches!(check, Some(AgentCheck::Failed(_)));
                match check {
                    Some(AgentCheck::Unsupported(arch)) => {
                        return Err(TransportError::UnsupportedArch { arch, carried: agent_bin::carried() })
                    }
                    Some(AgentCheck::Missing(agent) | AgentCheck::Failed(agent)) if attempt == 0 => {
                        if failed {
                            tracing::warn!(
                                "{}: the agent at {} failed its check (sha256, owner or mode); it was not run and is being replaced",
                                host.name,
                                bootstrap::path_of(agent)
                            );
                        }
                        let deadline = t.op.max(Duration::from_secs(60));
                        bootstrap::install(&session, agent, &host.user, password, deadline).await?;
                        continue;
                    }
                    Some(AgentCheck::Missing(agent) | AgentCheck::Failed(agent)) => {
                        return Err(TransportError::Start(format!(
                            "the agent installed at {} still fails its check after a fresh install; refusing to run it",
                            bootstrap::path_of(agent)
                        )))
                    }
                    None => {
                        let hint = bootstrap::sudo_hint(&stderr);
                        return Err(TransportError::Start(format!(
                            "agent exited with {:?}: {stderr}{hint}",
                            info.code
                        )));
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(TransportError::Start("agent upload did not take".into()))
}
