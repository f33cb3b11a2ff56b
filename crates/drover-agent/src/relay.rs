//! Peer relay: a host that holds a blob serves it to other hosts, so a large
//! artifact leaves the controller about once instead of once per host.
//!
//! - `RelayServe` (from the controller, over SSH) records a *grant* in
//!   `relay/<port>.json`: a per-run random token and the blobs that may be
//!   served, and starts `drover-agent relay --port P` detached if it is not
//!   running. The server answers on TCP `0.0.0.0:P` until it has been idle
//!   for the grant's `idle_ms` (and never longer than [`MAX_LIFETIME`]).
//! - `RelayFetch` makes this host a client: it asks a peer's server for each
//!   blob, streams it into `partial/`, hashes it on the way, and moves it into
//!   the store only when the blake3 matches (the invariant of [`crate::blobs`]).
//!
//! The wire protocol is one request line per connection,
//! `DROVER-RELAY/1 <token> <blake3 hex> <offset>\n`, answered by `OK <size>\n`
//! and the raw bytes from `offset` (std's `io::copy` uses `sendfile`), or by
//! `ERR <reason>\n`. No compression: peers share a fast network and most
//! large artifacts are compressed already. Only blobs the controller listed
//! are served, only to holders of the token (which travels over SSH only);
//! the bytes themselves are not secret from the network, and they are
//! verified by hash on arrival, so a wrong or malicious peer can waste time
//! but never get content activated.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::Hash;
use serde::{Deserialize, Serialize};

use crate::fsops::sync_dir;
use crate::layout::Layout;
use crate::state::{read_json, write_json};
use crate::{bail, blobs, Context, Result};

const PROTO: &str = "DROVER-RELAY/1";
/// A server never outlives this, whatever its grant says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(6 * 3600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Grant {
    token: String,
    blobs: BTreeSet<String>,
    idle_ms: u64,
}

fn dir(layout: &Layout) -> PathBuf {
    layout.state_dir().join("relay")
}

fn grant_path(layout: &Layout, port: u16) -> PathBuf {
    dir(layout).join(format!("{port}.json"))
}

fn pid_path(layout: &Layout, port: u16) -> PathBuf {
    dir(layout).join(format!("{port}.pid"))
}

/// Grant `blobs` (those held) to holders of `token` on `port`, and make sure
/// a server runs there. Returns the blobs that are served.
pub fn serve(layout: &Layout, port: u16, token: &str, wanted: &[Hash], idle_ms: u64) -> Result<Vec<Hash>> {
    if token.len() < 16 {
        bail!("relay token too short");
    }
    let holding: Vec<Hash> = wanted.iter().copied().filter(|h| blobs::has(layout, h)).collect();
    fs::create_dir_all(dir(layout)).ctx(|| "create relay dir".into())?;
    let mut g: Grant = read_json(&grant_path(layout, port))?.unwrap_or_default();
    if g.token != token {
        g = Grant { token: token.to_string(), ..Grant::default() };
    }
    g.blobs.extend(holding.iter().map(Hash::to_hex));
    g.idle_ms = idle_ms;
    write_json(&grant_path(layout, port), &g)?;
    if !running(layout, port) {
        spawn(layout, port)?;
    }
    Ok(holding)
}

/// Is a relay server of ours listening on `port`? (Its pid file names a live
/// process whose command line is ours.)
fn running(layout: &Layout, port: u16) -> bool {
    let Ok(pid) = fs::read_to_string(pid_path(layout, port)) else { return false };
    let cmd = fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd);
    cmd.contains("relay") && cmd.contains(&port.to_string())
}

fn spawn(layout: &Layout, port: u16) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let _ = fs::remove_file(pid_path(layout, port));
    let mut child = crate::reexec::command()
        .args(["relay", "--port", &port.to_string(), "--root"])
        .arg(layout.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .ctx(|| "start relay server".into())?;
    // The server writes its pid file once it listens; it exits at once if it
    // cannot bind.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if pid_path(layout, port).exists() {
            return Ok(());
        }
        if let Ok(Some(_)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("relay server did not start: {}", err.trim());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("relay server did not start within 5s")
}

/// The `relay` verb: `drover-agent relay --port N [--root DIR]`.
pub fn main(layout: &Layout, args: &[String]) -> Result<()> {
    let port = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| crate::AgentError("usage: drover-agent relay --port N [--root DIR]".into()))?;
    run_server(layout, port)
}

/// Serve granted blobs until idle.
pub fn run_server(layout: &Layout, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).ctx(|| format!("relay: listen on port {port}"))?;
    listener.set_nonblocking(true).ctx(|| "relay: nonblocking".into())?;
    fs::write(pid_path(layout, port), std::process::id().to_string()).ctx(|| "relay: pid file".into())?;
    let active = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut last = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                last = Instant::now();
                let (layout, active) = (layout.clone(), active.clone());
                active.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = handle(&layout, port, stream);
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
        let idle = read_json::<Grant>(&grant_path(layout, port)).ok().flatten().map_or(0, |g| g.idle_ms);
        if last.elapsed() > Duration::from_millis(idle) || started.elapsed() > MAX_LIFETIME {
            let _ = fs::remove_file(pid_path(layout, port));
            return Ok(());
        }
    }
}

fn handle(layout: &Layout, port: u16, stream: TcpStream) -> Result<()> {
    stream.set_nonblocking(false).ctx(|| "relay: socket".into())?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ctx(|| "relay: socket".into())?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ctx(|| "relay: socket".into())?;
    let mut r = BufReader::new(stream.try_clone().ctx(|| "relay: socket".into())?);
    let mut line = String::new();
    r.by_ref().take(512).read_line(&mut line).ctx(|| "relay: read request".into())?;
    let mut w = stream;
    match open_granted(layout, port, &line) {
        Ok((mut f, size, offset)) => {
            writeln!(w, "OK {size}").ctx(|| "relay: reply".into())?;
            f.seek(SeekFrom::Start(offset)).ctx(|| "relay: seek".into())?;
            std::io::copy(&mut f, &mut w).ctx(|| "relay: send".into())?;
        }
        Err(e) => {
            let _ = writeln!(w, "ERR {}", e.0.replace('\n', " "));
        }
    }
    Ok(())
}

fn open_granted(layout: &Layout, port: u16, line: &str) -> Result<(File, u64, u64)> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [proto, token, hex, offset] = parts[..] else { bail!("bad request") };
    let g: Grant = read_json(&grant_path(layout, port))?.unwrap_or_default();
    if proto != PROTO || g.token.is_empty() || !same(token.as_bytes(), g.token.as_bytes()) {
        bail!("not authorised");
    }
    let Some(h) = Hash::from_hex(hex).filter(|_| g.blobs.contains(hex)) else { bail!("blob not offered here") };
    let f = File::open(layout.blob(&h)).ctx(|| format!("blob {}", h.short()))?;
    let size = f.metadata().ctx(|| "stat blob".into())?.len();
    let offset: u64 = offset.parse().map_err(|_| crate::AgentError("bad offset".into()))?;
    if offset > size {
        bail!("offset past the end");
    }
    Ok((f, size, offset))
}

/// Constant-time comparison (the token is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fetch `wanted` (hash, size) from the relay server at `peer` into the
/// store. Returns (blobs fetched, bytes).
pub fn fetch(
    layout: &Layout,
    peer: &str,
    token: &str,
    wanted: &[(Hash, u64)],
    progress: &mut dyn FnMut(String),
) -> Result<(u64, u64)> {
    let (mut n, mut bytes) = (0, 0);
    for (h, size) in wanted {
        if blobs::has(layout, h) {
            continue;
        }
        progress(format!("fetching {} ({} MiB) from peer {peer}", h.short(), size >> 20));
        // A long transfer reports now and then: the controller's deadline
        // is on silence.
        let mut last = Instant::now();
        let mut tick = |done: u64| {
            if last.elapsed() > Duration::from_secs(2) {
                progress(format!("fetched {} of {} MiB of {} from peer {peer}", done >> 20, size >> 20, h.short()));
                last = Instant::now();
            }
        };
        fetch_one(layout, peer, token, h, *size, &mut tick)
            .map_err(|e| crate::AgentError(format!("peer {peer}: {}", e.0)))?;
        n += 1;
        bytes += size;
    }
    Ok((n, bytes))
}

fn fetch_one(layout: &Layout, peer: &str, token: &str, h: &Hash, size: u64, tick: &mut dyn FnMut(u64)) -> Result<()> {
    let addr = peer
        .to_socket_addrs()
        .ctx(|| "resolve".into())?
        .next()
        .ok_or_else(|| crate::AgentError("no address".into()))?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ctx(|| "connect".into())?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ctx(|| "socket".into())?;
    let mut w = stream.try_clone().ctx(|| "socket".into())?;
    writeln!(w, "{PROTO} {token} {} 0", h.to_hex()).ctx(|| "send request".into())?;
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    r.by_ref().take(512).read_line(&mut line).ctx(|| "read reply".into())?;
    match line.trim().split_once(' ') {
        Some(("OK", n)) if n.parse::<u64>().ok() == Some(size) => {}
        Some(("OK", n)) => bail!("blob {} has {n} bytes there, expected {size}", h.short()),
        _ => bail!("refused: {}", line.trim()),
    }
    store_stream(layout, h, size, &mut r, &format!("relay-{}", h.to_hex()), tick)
}

/// Copy exactly `size` bytes from `r` into the store as blob `h`: written to
/// `partial/<name>`, hashed on the way, moved into `blobs/` only if the
/// blake3 matches. Nothing is left behind on failure.
/// `tick` gets the byte count so far after every read.
pub fn store_stream(
    layout: &Layout,
    h: &Hash,
    size: u64,
    r: &mut dyn Read,
    name: &str,
    tick: &mut dyn FnMut(u64),
) -> Result<()> {
    fs::create_dir_all(layout.partial_dir()).ctx(|| "create partial dir".into())?;
    let tmp = layout.partial_dir().join(name);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let k = r.read(&mut buf[..want]).ctx(|| "receive".into())?;
            if k == 0 {
                bail!("blob {}: stream ended {left} bytes short", h.short());
            }
            hasher.update(&buf[..k]);
            f.write_all(&buf[..k]).ctx(|| format!("write {}", tmp.display()))?;
            left -= k as u64;
            tick(size - left);
        }
        let got = Hash(*hasher.finalize().as_bytes());
        if got != *h {
            bail!("blob {} failed verification (content hashes to {}); discarded", h.short(), got.short());
        }
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        fs::create_dir_all(layout.blobs()).ctx(|| "create blob dir".into())?;
        fs::rename(&tmp, layout.blob(h)).ctx(|| format!("store blob {}", h.short()))?;
        sync_dir(&layout.blobs())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_and_fetch_verified() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (la, lb) = (Layout::new(a.path()), Layout::new(b.path()));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let h = Hash(*blake3::hash(&data).as_bytes());
        store_stream(&la, &h, data.len() as u64, &mut &data[..], "t", &mut |_| {}).unwrap();
        // A server in a thread (the real one is a detached process).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        fs::create_dir_all(dir(&la)).unwrap();
        let token = "0123456789abcdef0123";
        let g = Grant { token: token.into(), blobs: [h.to_hex()].into(), idle_ms: 2000 };
        write_json(&grant_path(&la, port), &g).unwrap();
        let la2 = la.clone();
        let server = std::thread::spawn(move || run_server(&la2, port));
        while !pid_path(&la, port).exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let peer = format!("127.0.0.1:{port}");
        let wrong = fetch(&lb, &peer, "not-the-token-at-all", &[(h, data.len() as u64)], &mut |_| {});
        assert!(wrong.unwrap_err().0.contains("not authorised"));
        let other = Hash([9; 32]);
        assert!(fetch(&lb, &peer, token, &[(other, 5)], &mut |_| {}).is_err());
        let (n, bytes) = fetch(&lb, &peer, token, &[(h, data.len() as u64)], &mut |_| {}).unwrap();
        assert_eq!((n, bytes), (1, data.len() as u64));
        assert_eq!(fs::read(lb.blob(&h)).unwrap(), data);
        server.join().unwrap().unwrap();
    }
}
