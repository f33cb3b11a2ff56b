//! How the controller reaches a host's agent.
//!
//! - [`Transport::Ssh`]: the real thing. One SSH connection per host; the
//!   agent is installed in the root-owned `/var/lib/drover/agent/` on first
//!   contact (and after every drover upgrade: a new hash is a new file),
//!   checked by sha256 as root before every start, and started under `sudo`
//!   for non-root users. See [`crate::bootstrap`].
//! - [`Transport::Sim`]: simulated hosts at scale, agents in-process (or as
//!   processes) over shaped links: latency, bandwidth, failures. See
//!   [`crate::sim`].
//!
//! The remote commands are fixed strings whose only variable parts are the
//! agent's hex digests and a checked temporary path: there is no remote shell
//! built from user input. The protocol itself is typed frames.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_proto::{Facts, HostState, Request, Response, PROTOCOL_VERSION};
use drover_spec::Host;

use crate::bootstrap;
use crate::link::{AgentLink, LinkError};

#[derive(Debug, Clone)]
pub enum Transport {
    Ssh,
    Sim(std::sync::Arc<crate::sim::Sim>),
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest silence tolerated from an agent during an operation.
    pub op: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Ssh(#[from] drover_ssh::SshError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("could not start the agent: {0}")]
    Start(String),
    #[error("agent speaks protocol {0}, this drover {PROTOCOL_VERSION}")]
    Version(u32),
}

impl TransportError {
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Ssh(e) => e.is_transient(),
            TransportError::Link(e) => e.is_transient(),
            TransportError::Start(_) | TransportError::Version(_) => false,
        }
    }
}

/// An open session with a host's agent, after the hello exchange.
pub struct Connection {
    pub link: AgentLink,
    pub facts: Facts,
    pub state: HostState,
    /// How long the transport took to reach the host (SSH: TCP, handshake,
    /// authentication) and then to start the agent and exchange the hello
    /// (an agent push included): the `connect` and `hello` phases.
    pub connect_time: Duration,
    pub hello_time: Duration,
    _keep: Keep,
}

enum Keep {
    Ssh(drover_ssh::Session),
    Sim(crate::sim::Guard),
}

impl Connection {
    pub async fn close(self) {
        self.link.close().await;
        match self._keep {
            Keep::Ssh(s) => s.close().await,
            Keep::Sim(g) => g.close().await,
        }
    }
}

impl Transport {
    /// Simulated hosts `base/<host>`, one local agent process per
    /// connection, links unshaped: what `--simulate DIR` means for the
    /// commands without `--sim-*` flags (rollout, status, logs, exec, drain).
    pub fn local(base: &std::path::Path) -> std::io::Result<Transport> {
        let shape = crate::sim::LinkShape::default();
        Ok(Transport::Sim(std::sync::Arc::new(crate::sim::Sim::new(std::path::absolute(base)?, shape, true))))
    }

    pub async fn connect(&self, host: &Host, t: Timeouts) -> Result<Connection, TransportError> {
        self.connect_as(host, t, false).await
    }

    /// A session that only looks (`drover plan`): the agent takes no lock,
    /// runs no recovery and writes nothing (at most, the agent binary is
    /// pushed to its cache on first contact).
    pub async fn connect_read_only(&self, host: &Host, t: Timeouts) -> Result<Connection, TransportError> {
        self.connect_as(host, t, true).await
    }

    async fn connect_as(&self, host: &Host, t: Timeouts, read_only: bool) -> Result<Connection, TransportError> {
        let start = Instant::now();
        let (mut c, connected) = match self {
            Transport::Ssh => connect_ssh(host, t, read_only).await?,
            Transport::Sim(sim) => {
                let (w, r, guard) = sim.open(host).await?;
                let connected = Instant::now();
                let link = AgentLink::start(w, r, None, t.op).await?;
                (hello(link, Keep::Sim(guard), read_only).await?, connected)
            }
        };
        c.connect_time = connected - start;
        c.hello_time = connected.elapsed();
        Ok(c)
    }
}

async fn hello(mut link: AgentLink, keep: Keep, read_only: bool) -> Result<Connection, TransportError> {
    let req = Request::Hello {
        protocol: PROTOCOL_VERSION,
        controller: format!("drover {}", env!("CARGO_PKG_VERSION")),
        idle_ms: u64::try_from(link.timeout().as_millis()).unwrap_or(u64::MAX),
        read_only,
    };
    match link.call(&req, &mut |_| {}).await? {
        Response::Hello { protocol, facts, state, .. } if protocol == PROTOCOL_VERSION => {
            Ok(Connection { link, facts, state, connect_time: Duration::ZERO, hello_time: Duration::ZERO, _keep: keep })
        }
        Response::Hello { protocol, .. } => Err(TransportError::Version(protocol)),
        other => Err(LinkError::Protocol(format!("expected Hello, got {other:?}")).into()),
    }
}

fn ssh_target(host: &Host, t: Timeouts) -> drover_ssh::Target {
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
async fn connect_ssh(host: &Host, t: Timeouts, read_only: bool) -> Result<(Connection, Instant), TransportError> {
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
                let code = info.code.unwrap_or(0);
                if (code == bootstrap::EXIT_NO_AGENT || code == bootstrap::EXIT_BAD_AGENT) && attempt == 0 {
                    if code == bootstrap::EXIT_BAD_AGENT {
                        tracing::warn!(
                            "{}: the agent at {} failed its check (sha256, owner or mode); it was not run and is being replaced",
                            host.name,
                            bootstrap::agent_path()
                        );
                    }
                    bootstrap::install(&session, &host.user, password, t.op.max(Duration::from_secs(60))).await?;
                    continue;
                }
                let stderr = String::from_utf8_lossy(&info.stderr).trim().to_string();
                if code == bootstrap::EXIT_NO_AGENT || code == bootstrap::EXIT_BAD_AGENT {
                    return Err(TransportError::Start(format!(
                        "the agent installed at {} still fails its check after a fresh install; refusing to run it",
                        bootstrap::agent_path()
                    )));
                }
                let hint = bootstrap::sudo_hint(&stderr);
                return Err(TransportError::Start(format!("agent exited with {:?}: {stderr}{hint}", info.code)));
            }
            Err(e) => return Err(e),
        }
    }
    Err(TransportError::Start("agent upload did not take".into()))
}
