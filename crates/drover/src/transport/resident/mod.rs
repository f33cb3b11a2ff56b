//! Connections that persist (`[ssh] persist`, docs/ssh.md "Persistent
//! connections"): a per-user resident process holds one authenticated SSH
//! session per host between commands, so a command reaches a host's agent
//! without a TCP connect, handshake and login.
//!
//! A command's [`Client`] asks the resident, over its Unix socket, for one
//! host ([`wire`]); the resident starts the agent over its held session
//! (the same checked start command as a direct connection) and splices the
//! socket to it, after which the client speaks the agent protocol exactly
//! as over a direct SSH channel. A host the resident holds no session to
//! yet is answered "not held" at once, and logged in to in the background:
//! a command never waits on the resident's login, so it never pays two
//! connect timeouts for a dead host. Whenever the resident is absent,
//! refuses or is not ours, the client goes direct: nothing above the
//! transport can tell, except [`Via`] in a host's report.
//!
//! The socket lives in a per-user 0700 directory, and is named by a hash of
//! the canonical project directory, every host's connection settings (so an
//! edited inventory or a new pin never meets an old resident) and this
//! drover binary (so an upgraded drover, with its new agent, never uses a
//! resident of the old one). Both ends check the other's uid.
//!
//! Simulated hosts (`--simulate`) go through a resident too, so a warm run
//! at scale is measured on the path a real one takes: the resident, named
//! also by the simulation (its hosts' directory and its links), runs the
//! simulated hosts in a process of its own and keeps one agent per host
//! over a link shaped as the simulation says ([`held`]).

mod held;
mod server;
mod splice;
mod wire;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_spec::{Host, Project};
use tokio::net::UnixStream;

use super::link::{Reader, Writer};
use super::sim::Sim;
pub use server::{serve, ServeSpec};
use wire::Ask;

/// How a connection reached its agent: reported per host in `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// A session of its own (SSH login, or a simulated link).
    Direct,
    /// Through the resident's held session (SSH, or a simulated link).
    Resident,
}

/// Why the resident was not used (the connection then goes direct; these
/// are only ever traced).
#[derive(Debug, thiserror::Error)]
pub enum ResidentError {
    #[error("resident socket {0}: {1}")]
    Socket(PathBuf, std::io::Error),
    #[error("the resident at {path} runs as uid {uid}, not ours ({ours})")]
    Foreign { path: PathBuf, uid: u32, ours: u32 },
    #[error("resident refused: {0}")]
    Refused(String),
    #[error("resident did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not start the resident: {0}")]
    Spawn(std::io::Error),
}

/// A command's way to the resident of its project.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    project: PathBuf,
    idle: Duration,
    /// The simulation the resident serves instead of SSH.
    sim: Option<Arc<Sim>>,
    /// Started (or found) once per command: a resident that died mid-run
    /// is not restarted by that run, whose hosts go direct.
    started: tokio::sync::OnceCell<bool>,
}

/// The uid this process runs as.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The per-user directory of resident sockets, created 0700; `None` when it
/// exists but is not ours alone (then no resident is used or started).
pub fn socket_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .map(|d| d.join("drover"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/drover-{}", euid())));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&base);
    let m = std::fs::symlink_metadata(&base).ok()?;
    let ours = m.is_dir() && m.uid() == euid() && m.permissions().mode() & 0o077 == 0;
    if !ours {
        tracing::debug!("{}: not a 0700 directory of uid {}; no resident", base.display(), euid());
    }
    ours.then_some(base)
}

/// The socket's name for `project` (see the module doc for what it binds),
/// and with `sim` for that simulation of its hosts.
pub fn socket_name(dir: &Path, hosts: &[Host], sim: Option<&Sim>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    if let Some(sim) = sim {
        h.update(sim.identity().as_bytes());
        h.update(b"\0");
    }
    if let Ok(m) = std::env::current_exe().and_then(std::fs::metadata) {
        h.update(
            format!("{}.{}.{}.{}", m.dev(), m.ino(), m.size(), m.mtime_nsec() + m.mtime() * 1_000_000_000).as_bytes(),
        );
    }
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for host in hosts {
        h.update(connection_identity(host).as_bytes());
        h.update(b"\0");
    }
    format!("{}.sock", &h.finalize().to_hex()[..24])
}

/// Everything about how `host` is reached: name, address, login, keys,
/// pins, CAs, ssh_config values, jump hosts.
fn connection_identity(host: &Host) -> String {
    format!(
        "{}|{}|{}|{}|{:?}|{}|{:?}|{:?}|{:?}",
        host.name,
        host.address,
        host.port,
        host.user,
        host.auth.key,
        host.auth.password.as_deref().map(|p| blake3::hash(p.as_bytes()).to_hex().to_string()).unwrap_or_default(),
        host.host_keys,
        host.ssh,
        host.proxy_jump,
    )
}

impl Client {
    /// The resident for `project` (with `sim`: for that simulation of its
    /// hosts), when `[ssh] persist` turns it on and a private socket
    /// directory can be had.
    pub fn for_project(project: &Project, sim: Option<Arc<Sim>>) -> Option<Client> {
        let idle = project.settings.persist?;
        let dir = std::fs::canonicalize(&project.dir).ok()?;
        let socket = socket_dir()?.join(socket_name(&dir, &project.hosts, sim.as_deref()));
        Some(Client { socket, project: dir, idle, sim, started: tokio::sync::OnceCell::new() })
    }

    /// The simulation this resident serves (`None`: SSH).
    pub fn sim(&self) -> Option<&Arc<Sim>> {
        self.sim.as_ref()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A byte stream to `host`'s agent through the resident (started if
    /// none runs), or why not.
    pub(super) async fn open(
        &self,
        host: &Host,
        read_only: bool,
        wait: Duration,
    ) -> Result<(Writer, Reader), ResidentError> {
        let mut s = match self.dial().await {
            Ok(s) => s,
            Err(e) if self.started.initialized() => return Err(e),
            Err(_) => {
                let started = *self.started.get_or_try_init(|| self.start()).await?;
                if !started {
                    return Err(ResidentError::Refused("not started".into()));
                }
                self.dial().await?
            }
        };
        let ask = Ask { host: host.name.clone(), read_only };
        let answer = tokio::time::timeout(wait, async {
            wire::write_ask(&mut s, &ask).await?;
            wire::read_answer(&mut s).await
        })
        .await
        .map_err(|_| ResidentError::Timeout(wait))?
        .map_err(|e| ResidentError::Socket(self.socket.clone(), e))?;
        answer.map_err(ResidentError::Refused)?;
        let (r, w) = s.into_split();
        Ok((Box::new(w), Box::new(r)))
    }

    /// Connect, and make sure the peer is a process of our own uid.
    async fn dial(&self) -> Result<UnixStream, ResidentError> {
        let s = UnixStream::connect(&self.socket).await.map_err(|e| ResidentError::Socket(self.socket.clone(), e))?;
        let uid = s.peer_cred().map_err(|e| ResidentError::Socket(self.socket.clone(), e))?.uid();
        if uid != euid() {
            return Err(ResidentError::Foreign { path: self.socket.clone(), uid, ours: euid() });
        }
        Ok(s)
    }

    /// Start the resident (detached: its own session, stdio to
    /// `.drover/resident.log`) and wait briefly for its socket.
    async fn start(&self) -> Result<bool, ResidentError> {
        let exe = std::env::current_exe().map_err(ResidentError::Spawn)?;
        let logs = self.project.join(".drover");
        std::fs::create_dir_all(&logs).map_err(ResidentError::Spawn)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("resident.log"))
            .map_err(ResidentError::Spawn)?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("-C")
            .arg(&self.project)
            .arg("resident")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--idle-ms")
            .arg(self.idle.as_millis().to_string())
            .args(self.sim.iter().flat_map(|s| s.args()))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(ResidentError::Spawn)?)
            .stderr(log);
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches no memory of ours;
        // it detaches the resident from our terminal and process group, so
        // a Ctrl-C of this command does not reach it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        // Not waited for: the resident outlives this command (init reaps it).
        cmd.spawn().map_err(ResidentError::Spawn)?;
        tracing::debug!("started a resident for {} at {}", self.project.display(), self.socket.display());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            if self.socket.exists() && UnixStream::connect(&self.socket).await.is_ok() {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(false)
    }
}
