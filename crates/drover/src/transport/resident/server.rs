//! The resident's side: a Unix socket served until `idle` passes with no
//! client (or SIGTERM), one held SSH session per host (logged in in the
//! background when first asked for, checked by keepalives, replaced when
//! dead, with backoff after failed logins), and one agent per host over it,
//! spliced to one client at a time and kept between clients (a client ends
//! its session with `Detach`, see [`splice`]), so a warm command starts no
//! process on the host: no sudo, no sha256 check, no exec.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_spec::Host;
use tokio::net::{UnixListener, UnixStream};

use super::super::connection::Timeouts;
use super::super::sim::{hosts, Sim};
use super::held::{Held, SimHosts};
use super::splice::{splice, Agent, Ended};
use super::{euid, wire};

/// What `drover resident` serves.
pub struct ServeSpec {
    pub socket: PathBuf,
    pub hosts: Vec<Host>,
    pub timeouts: Timeouts,
    /// Exit after this long with no client.
    pub idle: Duration,
    /// Simulated hosts (`--simulate`) instead of SSH: their agents run in
    /// a process of their own (see [`hosts`]), reached over links shaped
    /// as the simulation says.
    pub sim: Option<Arc<Sim>>,
}

/// The longest wait between login attempts to a host whose logins fail.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One host's held session. Idle, it is the session's handle and these few
/// words: the russh connection's buffers are what a host costs (measured in
/// docs/benchmarks.md).
#[derive(Default)]
struct Slot {
    session: Option<Held>,
    /// The agent between two clients: detached, holding nothing on the
    /// host (no lock), waiting for the next `Hello`.
    agent: Option<Agent>,
    /// A login is under way (in the background).
    connecting: bool,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Shared {
    hosts: HashMap<String, (Host, Mutex<Slot>)>,
    timeouts: Timeouts,
    sim: Option<Arc<SimHosts>>,
    active: AtomicUsize,
    last_seen: Mutex<Instant>,
    /// A client finished since the heap was last trimmed.
    dirty: std::sync::atomic::AtomicBool,
}

/// Serve until idle. Returns at once when another resident holds the socket's lock.
pub async fn serve(spec: ServeSpec) -> std::io::Result<()> {
    let lock_path = spec.socket.with_extension("lock");
    let lock_file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("another resident serves {}", spec.socket.display());
        return Ok(());
    }
    // A held host is a TCP socket, and each command's host a Unix socket
    // and an SSH channel: thousands of hosts need more than 1024.
    crate::transport::raise_fd_limit();
    let _ = std::fs::remove_file(&spec.socket);
    let listener = UnixListener::bind(&spec.socket)?;
    std::fs::set_permissions(&spec.socket, std::fs::Permissions::from_mode(0o600))?;
    let pid_path = spec.socket.with_extension("pid");
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))?;
    eprintln!("resident {} serving {} hosts at {}", std::process::id(), spec.hosts.len(), spec.socket.display());
    let sim = match spec.sim {
        Some(sim) => {
            let exe = std::env::current_exe()?;
            let process = hosts::Process::start(&exe, sim.base(), &spec.socket.with_extension("hosts"))?;
            Some(Arc::new(SimHosts { sim, process }))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        hosts: spec.hosts.into_iter().map(|h| (h.name.clone(), (h, Default::default()))).collect(),
        timeouts: spec.timeouts,
        sim,
        active: AtomicUsize::new(0),
        last_seen: Mutex::new(Instant::now()),
        dirty: Default::default(),
    });
    let tick = (spec.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                eprintln!("resident {}: terminated", std::process::id());
                break;
            }
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, most likely: let clients
                        // finish (they go direct meanwhile) rather than spin.
                        tracing::debug!("resident accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let s = shared.clone();
                s.active.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Err(e) = client(&s, stream).await {
                        tracing::debug!("resident client: {e}");
                    }
                    *s.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    s.dirty.store(true, Ordering::SeqCst);
                    s.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            () = tokio::time::sleep(tick) => {
                let idle_for = shared.last_seen.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                let idle_now = shared.active.load(Ordering::SeqCst) == 0;
                if idle_now && idle_for >= spec.idle {
                    break;
                }
                if idle_now && shared.dirty.swap(false, Ordering::SeqCst) {
                    trim_heap();
                }
            }
        }
    }
    eprintln!("resident {}: exiting (idle limit {:?})", std::process::id(), spec.idle);
    // Our socket still (a newer resident would hold the lock we hold).
    let _ = std::fs::remove_file(&spec.socket);
    let _ = std::fs::remove_file(&pid_path);
    for (_, slot) in shared.hosts.values() {
        lock(slot).agent = None;
    }
    let held: Vec<Held> = shared.hosts.values().filter_map(|(_, slot)| lock(slot).session.take()).collect();
    for s in held {
        s.close().await;
    }
    drop(lock_file);
    Ok(())
}

/// Give the heap's free pages back to the system once the clients are
/// gone: a command's agent traffic (1 MiB chunks through every host's
/// session) leaves freed buffers in malloc's arenas, which an idle resident
/// would otherwise keep resident for as long as it lives.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator to the
    // system; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One client connection: check its uid, give it the host's agent (kept,
/// or started), splice, and keep the agent again if it detached.
async fn client(shared: &Arc<Shared>, mut stream: UnixStream) -> Result<(), String> {
    let uid = stream.peer_cred().map_err(|e| e.to_string())?.uid();
    if uid != euid() {
        // Not even an answer: a process of another user learns nothing.
        return Err(format!("refused a client of uid {uid}"));
    }
    let ask = tokio::time::timeout(Duration::from_secs(5), wire::read_ask(&mut stream))
        .await
        .map_err(|_| "no request within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let agent = match agent_for(shared, &ask.host).await {
        Ok(p) => p,
        Err(msg) => {
            let _ = wire::write_answer(&mut stream, Err(&msg)).await;
            return Err(format!("{}: {msg}", ask.host));
        }
    };
    wire::write_answer(&mut stream, Ok(())).await.map_err(|e| e.to_string())?;
    let Some((_, slot)) = shared.hosts.get(&ask.host) else { return Ok(()) };
    match splice(stream, agent).await {
        Ended::Kept(agent) => {
            let mut slot = lock(slot);
            // One kept per host: a second (two clients at once) is ended.
            if slot.agent.is_none() && slot.session.is_some() {
                slot.agent = Some(agent);
            }
        }
        // Not a word from the agent: the host may have frozen under the
        // held session. Log in again (in the background) rather than make
        // the next command wait on it too.
        Ended::Silent => {
            tracing::debug!("{}: the agent said nothing; dropping the held session", ask.host);
            let mut slot = lock(slot);
            slot.session = None;
            slot.agent = None;
        }
        Ended::Done => {}
    }
    Ok(())
}

/// The agent on host `name`: the one kept from the last client, or one
/// started over the held session. With no live session the answer is "not
/// held" at once (the client goes direct, so a command never waits on the
/// resident's login) and a login starts in the background for the next
/// command, unless logins failed lately (backoff).
async fn agent_for(shared: &Arc<Shared>, name: &str) -> Result<Agent, String> {
    let Some((host, slot)) = shared.hosts.get(name) else {
        return Err(format!("{name} is not in this resident's inventory"));
    };
    let (held, kept) = {
        let mut slot = lock(slot);
        if slot.session.as_ref().is_some_and(Held::is_closed) {
            slot.session = None;
            slot.agent = None;
        }
        (slot.session.clone(), slot.agent.take())
    };
    if let Some(mut agent) = kept.filter(|_| held.is_some()) {
        if !agent.ended() {
            return Ok(agent);
        }
        tracing::debug!("{name}: the kept agent ended; starting another");
    }
    if let Some(session) = held {
        match tokio::time::timeout(shared.timeouts.connect, session.start_agent(host)).await {
            Ok(Ok(agent)) => return Ok(agent),
            Ok(Err(e)) => tracing::debug!("{name}: held session failed ({e}); logging in again"),
            Err(_) => tracing::debug!("{name}: held session did not answer; logging in again"),
        }
        lock(slot).session = None;
    }
    let mut state = lock(slot);
    if state.connecting {
        return Err("no session held yet (logging in)".into());
    }
    if let Some(at) = state.retry_at.filter(|at| Instant::now() < *at) {
        return Err(format!("backing off for {:?} after failed logins: {}", at - Instant::now(), state.last_error));
    }
    state.connecting = true;
    let (shared, name) = (shared.clone(), name.to_string());
    tokio::spawn(async move { login(&shared, &name).await });
    Err("no session held yet (logging in for the next command)".into())
}

/// Log in to `name` and hold the session; after a failure, wait longer
/// before the next try (1 s doubling to [`MAX_BACKOFF`]).
async fn login(shared: &Shared, name: &str) {
    let Some((host, slot)) = shared.hosts.get(name) else { return };
    let result = Held::login(host, shared.timeouts, shared.sim.as_ref()).await;
    let mut slot = lock(slot);
    slot.connecting = false;
    match result {
        Ok(s) => {
            slot.session = Some(s);
            slot.failures = 0;
            slot.retry_at = None;
        }
        Err(e) => {
            tracing::debug!("{name}: login failed: {e}");
            slot.failures = slot.failures.saturating_add(1);
            let wait = Duration::from_millis(500u64 << slot.failures.min(7)).min(MAX_BACKOFF);
            slot.retry_at = Some(Instant::now() + wait);
            slot.last_error = e;
        }
    }
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}
