//! Reaching an agent over SSH: log in, start the checked agent as root
//! (installing it first when the host lacks it or it fails its check), and
//! say hello. The bootstrap's shell scripts and what their exits mean are in
//! [`super::bootstrap`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_spec::Host;

use super::bootstrap::{self, AgentCheck};
use super::connection::{hello, Connection, Keep, Timeouts};
use super::error::TransportError;
use super::link::{AgentLink, LinkError};

/// How drover logs in to `host` (auth, pins, jump hosts): also what `drover
/// trust` scans through.
pub fn ssh_target(host: &Host, t: Timeouts) -> drover_ssh::Target {
    let auth = match (&host.auth.key, &host.auth.password) {
        (Some(k), _) => drover_ssh::Auth::Key { path: k.clone(), passphrase: None },
        (None, Some(p)) => drover_ssh::Auth::Password(drover_ssh::Secret::new(p.clone())),
        (None, None) => default_auth(),
    };
    let timeouts = drover_ssh::Timeouts { connect: t.connect, ..Default::default() };
    drover_ssh::Target {
        address: host.address.clone(),
        port: host.port,
        user: host.user.clone(),
        auth,
        host_keys: host.host_keys.clone(),
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

/// No key or password configured: the SSH agent if one runs, else the
/// conventional key file.
fn default_auth() -> drover_ssh::Auth {
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        return drover_ssh::Auth::Agent;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    drover_ssh::Auth::Key { path: home.join(".ssh/id_ed25519"), passphrase: None }
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
                let check = info.code.and_then(AgentCheck::from_exit);
                match check {
                    Some(check) if attempt == 0 => {
                        if check == AgentCheck::Failed {
                            tracing::warn!(
                                "{}: the agent at {} failed its check (sha256, owner or mode); it was not run and is being replaced",
                                host.name,
                                bootstrap::agent_path()
                            );
                        }
                        bootstrap::install(&session, &host.user, password, t.op.max(Duration::from_secs(60))).await?;
                        continue;
                    }
                    Some(_) => {
                        return Err(TransportError::Start(format!(
                            "the agent installed at {} still fails its check after a fresh install; refusing to run it",
                            bootstrap::agent_path()
                        )))
                    }
                    None => {
                        let stderr = String::from_utf8_lossy(&info.stderr).trim().to_string();
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
