//! The resident's side: a Unix socket served until `idle` passes with no
//! client, one held SSH session per host (logged in on first use, checked
//! by keepalives, replaced when dead, with backoff after failed logins),
//! and per client connection one agent started over it and spliced to the
//! client.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_spec::Host;
use drover_ssh::{RemoteProcess, Session};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

use super::super::bootstrap;
use super::super::connection::Timeouts;
use super::super::ssh::ssh_target;
use super::{euid, wire};

/// What `drover resident` serves.
pub struct ServeSpec {
    pub socket: PathBuf,
    pub hosts: Vec<Host>,
    pub timeouts: Timeouts,
    /// Exit after this long with no client.
    pub idle: Duration,
}

/// The longest wait between login attempts to a host whose logins fail.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One host's held session. Idle, it is the session's handle and these few
/// words: the russh connection's buffers are what a host costs (measured in
/// docs/benchmarks.md).
#[derive(Default)]
struct Slot {
    session: Option<Session>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Shared {
    hosts: HashMap<String, (Host, tokio::sync::Mutex<Slot>)>,
    timeouts: Timeouts,
    active: AtomicUsize,
    last_seen: Mutex<Instant>,
    /// A client finished since the heap was last trimmed.
    dirty: std::sync::atomic::AtomicBool,
}

/// Serve until idle. Returns at once when another resident holds the socket's lock.
pub async fn serve(spec: ServeSpec) -> std::io::Result<()> {
    let lock_path = spec.socket.with_extension("lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("another resident serves {}", spec.socket.display());
        return Ok(());
    }
    let _ = std::fs::remove_file(&spec.socket);
    let listener = UnixListener::bind(&spec.socket)?;
    std::fs::set_permissions(&spec.socket, std::fs::Permissions::from_mode(0o600))?;
    let pid_path = spec.socket.with_extension("pid");
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))?;
    eprintln!("resident {} serving {} hosts at {}", std::process::id(), spec.hosts.len(), spec.socket.display());
    let shared = Arc::new(Shared {
        hosts: spec.hosts.into_iter().map(|h| (h.name.clone(), (h, Default::default()))).collect(),
        timeouts: spec.timeouts,
        active: AtomicUsize::new(0),
        last_seen: Mutex::new(Instant::now()),
        dirty: Default::default(),
    });
    let tick = (spec.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
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
    eprintln!("resident {}: idle for {:?}, exiting", std::process::id(), spec.idle);
    // Our socket still (a newer resident would hold the lock we hold).
    let _ = std::fs::remove_file(&spec.socket);
    let _ = std::fs::remove_file(&pid_path);
    for (_, slot) in shared.hosts.values() {
        if let Some(s) = slot.lock().await.session.take() {
            s.close().await;
        }
    }
    drop(lock);
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

/// One client connection: check its uid, start the agent it asks for, splice.
async fn client(shared: &Shared, mut stream: UnixStream) -> Result<(), String> {
    let uid = stream.peer_cred().map_err(|e| e.to_string())?.uid();
    if uid != euid() {
        // Not even an answer: a process of another user learns nothing.
        return Err(format!("refused a client of uid {uid}"));
    }
    let ask = tokio::time::timeout(Duration::from_secs(5), wire::read_ask(&mut stream))
        .await
        .map_err(|_| "no request within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let Some((host, slot)) = shared.hosts.get(&ask.host) else {
        let msg = format!("{} is not in this resident's inventory", ask.host);
        let _ = wire::write_answer(&mut stream, Err(&msg)).await;
        return Err(msg);
    };
    let proc = match start_agent(host, slot, shared.timeouts).await {
        Ok(p) => p,
        Err(msg) => {
            let _ = wire::write_answer(&mut stream, Err(&msg)).await;
            return Err(format!("{}: {msg}", ask.host));
        }
    };
    wire::write_answer(&mut stream, Ok(())).await.map_err(|e| e.to_string())?;
    let (mut agent_in, mut agent_out, _exit) = proc.into_parts();
    let (mut from_client, mut to_client) = stream.into_split();
    // Both directions to their ends: the client's end of input is the
    // agent's (it finishes its session), the agent's end of output the
    // client's (it sees the agent gone).
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut agent_in).await;
        let _ = agent_in.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut agent_out, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
    Ok(())
}

/// The agent on `host`, started over the held session: a dead session is
/// replaced by a new login, unless logins failed lately (then the client
/// goes direct, through its own retries, until the backoff passes).
async fn start_agent(host: &Host, slot: &tokio::sync::Mutex<Slot>, t: Timeouts) -> Result<RemoteProcess, String> {
    let command = bootstrap::serve_command(&host.user);
    let mut slot = slot.lock().await;
    if let Some(s) = slot.session.take().filter(|s| !s.is_closed()) {
        match s.exec(&command).await {
            Ok(p) => {
                slot.session = Some(s);
                return Ok(p);
            }
            Err(e) => tracing::debug!("{}: held session failed ({e}); logging in again", host.name),
        }
    }
    if let Some(at) = slot.retry_at.filter(|at| Instant::now() < *at) {
        return Err(format!("backing off for {:?} after failed logins: {}", at - Instant::now(), slot.last_error));
    }
    match Session::connect(&ssh_target(host, t)).await {
        Ok(s) => {
            slot.failures = 0;
            slot.retry_at = None;
            let p = s.exec(&command).await.map_err(|e| e.to_string());
            slot.session = Some(s);
            p
        }
        Err(e) => {
            slot.failures = slot.failures.saturating_add(1);
            let wait = Duration::from_millis(500u64 << slot.failures.min(7)).min(MAX_BACKOFF);
            slot.retry_at = Some(Instant::now() + wait);
            slot.last_error = e.to_string();
            Err(slot.last_error.clone())
        }
    }
}
