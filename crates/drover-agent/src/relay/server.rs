//! The relay server process (`drover-agent relay`): serves granted blobs to
//! authenticated peers on the one address the controller named, a bounded
//! number at a time, and logs every refusal.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_proto::Hash;

use super::auth::{self, PROTO};
use super::{grant_path, log_path, pid_path, Grant, MAX_LIFETIME};
use crate::layout::Layout;
use crate::state::read_json;
use crate::{bail, Context, Result};

/// A peer must answer the challenge within this long: a connection that says
/// nothing holds one of the few slots only briefly.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The refusal log stops growing here (a flood of bad connections must not
/// fill the disk).
const LOG_CAP: u64 = 1 << 20;
/// Answers accepted so far, remembered to tell a replay from a wrong secret
/// in the log (a replay is refused either way: its nonce is gone).
const REMEMBER: usize = 4096;

/// What the server is told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub bind: String,
    pub port: u16,
    pub max_conns: usize,
}

struct Shared {
    layout: Layout,
    port: u16,
    accepted: Mutex<VecDeque<[u8; 32]>>,
}

/// Serve granted blobs on `bind:port` until idle (the grant's `idle_ms`).
pub fn run(layout: &Layout, o: &Options) -> Result<()> {
    let addr: SocketAddr = (o.bind.as_str(), o.port)
        .to_socket_addrs()
        .ctx(|| format!("relay: address {}", o.bind))?
        .next()
        .ok_or_else(|| crate::AgentError::new(format!("relay: {} has no address", o.bind)))?;
    let listener = TcpListener::bind(addr).ctx(|| format!("relay: listen on {addr}"))?;
    listener.set_nonblocking(true).ctx(|| "relay: nonblocking".into())?;
    std::fs::write(pid_path(layout, o.port), std::process::id().to_string()).ctx(|| "relay: pid file".into())?;
    let shared = Arc::new(Shared { layout: layout.clone(), port: o.port, accepted: Mutex::new(VecDeque::new()) });
    let active = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut last = Instant::now();
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                last = Instant::now();
                if active.load(Ordering::SeqCst) >= o.max_conns {
                    log(&shared, peer, &format!("refused: busy ({} connections, the cap)", o.max_conns));
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.write_all(b"ERR busy\n");
                    continue;
                }
                let (shared, active) = (shared.clone(), active.clone());
                active.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    if let Err(e) = handle(&shared, stream, peer) {
                        log(&shared, peer, &format!("error: {}", e.0));
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
        if active.load(Ordering::SeqCst) > 0 {
            last = Instant::now();
        }
        let idle = read_json::<Grant>(&grant_path(layout, o.port)).ok().flatten().map_or(0, |g| g.idle_ms);
        if last.elapsed() > Duration::from_millis(idle) || started.elapsed() > MAX_LIFETIME {
            let _ = std::fs::remove_file(pid_path(layout, o.port));
            return Ok(());
        }
    }
}

fn handle(s: &Shared, stream: TcpStream, peer: SocketAddr) -> Result<()> {
    stream.set_nonblocking(false).ctx(|| "socket".into())?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).ctx(|| "socket".into())?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ctx(|| "socket".into())?;
    let nonce = auth::nonce()?;
    let mut w = stream.try_clone().ctx(|| "socket".into())?;
    writeln!(w, "{PROTO} {}", auth::hex(&nonce)).ctx(|| "send challenge".into())?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.by_ref().take(512).read_line(&mut line).ctx(|| "read request".into())?;
    match open_granted(s, &nonce, &line) {
        Ok((mut f, size, offset)) => {
            writeln!(w, "OK {size}").ctx(|| "reply".into())?;
            f.seek(SeekFrom::Start(offset)).ctx(|| "seek".into())?;
            std::io::copy(&mut f, &mut w).ctx(|| "send".into())?;
        }
        Err(e) => {
            log(s, peer, &e.0);
            // The peer learns no more than that it was refused.
            let reply = if e.0.starts_with("refused") { "not authorised" } else { e.0.as_str() };
            let _ = writeln!(w, "ERR {}", reply.replace('\n', " "));
        }
    }
    Ok(())
}

/// Check the answer to `nonce`, then the grant; open the blob.
fn open_granted(s: &Shared, nonce: &auth::Nonce, line: &str) -> Result<(File, u64, u64)> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [hex, offset, mac] = parts[..] else { bail!("refused: malformed request {:?}", trim(line)) };
    let (Some(h), Ok(offset), Some(mac)) = (Hash::from_hex(hex), offset.parse::<u64>(), auth::unhex::<32>(mac)) else {
        bail!("refused: malformed request {:?}", trim(line))
    };
    let g: Grant = read_json(&grant_path(&s.layout, s.port))?.unwrap_or_default();
    let want = auth::mac(&g.secret, nonce, &h, offset);
    let mut accepted = s.accepted.lock().unwrap_or_else(|e| e.into_inner());
    if g.secret.is_empty() || !auth::same(&mac, &want) {
        if accepted.iter().any(|m| auth::same(m, &mac)) {
            bail!("refused: replayed answer (good for an earlier connection only) for blob {}", h.short());
        }
        bail!("refused: wrong secret for blob {}", h.short());
    }
    if accepted.len() >= REMEMBER {
        accepted.pop_front();
    }
    accepted.push_back(mac);
    drop(accepted);
    if !g.blobs.contains(hex) {
        bail!("blob {} not offered here", h.short());
    }
    let f = File::open(s.layout.blob(&h)).ctx(|| format!("blob {}", h.short()))?;
    let size = f.metadata().ctx(|| "stat blob".into())?.len();
    if offset > size {
        bail!("offset past the end");
    }
    Ok((f, size, offset))
}

fn trim(line: &str) -> String {
    line.trim().chars().take(80).collect()
}

/// One line in `relay/<port>.log` (0600): when, who, what.
fn log(s: &Shared, peer: SocketAddr, what: &str) {
    let path = log_path(&s.layout, s.port);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_CAP) {
        return;
    }
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let f = OpenOptions::new().create(true).append(true).mode(0o600).open(&path);
    if let Ok(mut f) = f {
        let _ = writeln!(f, "{ms} {peer} {}", what.replace('\n', " "));
    }
}
