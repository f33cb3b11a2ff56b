//! Peer relay: a host that holds a blob serves it to other hosts, so a large
//! artifact leaves the controller about once instead of once per host.
//!
//! - `RelayServe` (from the controller, over SSH) records a *grant* in
//!   `relay/<port>.json` (0600): the run's secret and the blobs that may be
//!   served, and starts `drover-agent relay --port P --bind ADDR --max-conns
//!   N` detached if it is not running. The server listens on the address the
//!   controller gave (the host's inventory address), never on all addresses;
//!   serves at most N connections at once; and stops after the grant's
//!   `idle_ms` without a request (never later than [`MAX_LIFETIME`]).
//! - `RelayFetch` makes this host a client: it asks a peer's server for each
//!   blob, streams it into `partial/`, hashes it on the way, and moves it into
//!   the store only when the blake3 matches (the invariant of [`crate::blobs`]).
//!
//! Each connection is authenticated by a challenge ([`auth`]): the server
//! sends a fresh nonce, the client answers with a MAC keyed by the run's
//! secret, which itself never crosses the relay network. A wrong or replayed
//! answer is refused and logged in `relay/<port>.log` ([`server`]). The blob
//! bytes themselves are not secret from the network (no encryption), and
//! they are verified by hash on arrival, so a wrong or malicious peer can
//! waste time but never get content activated. No compression: peers share a
//! fast network and most large artifacts are compressed already.

pub mod auth;
pub mod server;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use drover_proto::Hash;
use serde::{Deserialize, Serialize};

use crate::fsops::sync_dir;
use crate::layout::Layout;
use crate::state::read_json;
use crate::{bail, blobs, Context, Result};

/// A server never outlives this, whatever its grant says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(6 * 3600);
/// Connections one server takes at once, at most, whatever it is asked.
pub const MAX_CONNS_LIMIT: u32 = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Grant {
    secret: String,
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

/// Refused connections, one line each (see [`server`]).
pub fn log_path(layout: &Layout, port: u16) -> PathBuf {
    dir(layout).join(format!("{port}.log"))
}

/// What a `RelayServe` asks for.
pub struct ServeRequest<'a> {
    pub bind: &'a str,
    pub port: u16,
    pub secret: &'a str,
    pub blobs: &'a [Hash],
    pub idle_ms: u64,
    pub max_conns: u32,
}

/// Grant `blobs` (those held) to holders of the secret on `bind:port`, and
/// make sure a server runs there. Returns the blobs that are served.
pub fn serve(layout: &Layout, r: &ServeRequest<'_>) -> Result<Vec<Hash>> {
    if r.secret.len() < 32 {
        bail!("relay secret too short (32 characters at least)");
    }
    if r.bind.is_empty() || r.bind.contains(['/', ' ', '\n', '\0']) {
        bail!("relay: bad listen address {:?}", r.bind);
    }
    let holding: Vec<Hash> = r.blobs.iter().copied().filter(|h| blobs::has(layout, h)).collect();
    // Root's only: the grant holds the run's secret, the log peers' addresses.
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir(layout)).ctx(|| "create relay dir".into())?;
    fs::set_permissions(dir(layout), fs::Permissions::from_mode(0o700)).ctx(|| "protect relay dir".into())?;
    let mut g: Grant = read_json(&grant_path(layout, r.port))?.unwrap_or_default();
    if g.secret != r.secret {
        g = Grant { secret: r.secret.to_string(), ..Grant::default() };
    }
    g.blobs.extend(holding.iter().map(Hash::to_hex));
    g.idle_ms = r.idle_ms;
    // Only root may read it: the grant holds the run's secret.
    crate::fsops::write_atomic(&grant_path(layout, r.port), &serde_json::to_vec(&g).ctx(|| "encode grant".into())?)?;
    if !running(layout, r.port) {
        spawn(layout, r)?;
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

fn spawn(layout: &Layout, r: &ServeRequest<'_>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let _ = fs::remove_file(pid_path(layout, r.port));
    let max = r.max_conns.clamp(1, MAX_CONNS_LIMIT);
    let mut child = crate::reexec::command()
        .args(["relay", "--port", &r.port.to_string(), "--bind", r.bind, "--max-conns", &max.to_string(), "--root"])
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
        if pid_path(layout, r.port).exists() {
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

/// The `relay` verb: `drover-agent relay --port N --bind ADDR [--max-conns N] [--root DIR]`.
pub fn main(layout: &Layout, args: &[String]) -> Result<()> {
    run_server(layout, &parse_args(args)?)
}

fn parse_args(args: &[String]) -> Result<server::Options> {
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let usage =
        || crate::AgentError::new("usage: drover-agent relay --port N --bind ADDR [--max-conns N] [--root DIR]".into());
    Ok(server::Options {
        port: get("--port").and_then(|p| p.parse().ok()).ok_or_else(usage)?,
        bind: get("--bind").cloned().ok_or_else(usage)?,
        max_conns: get("--max-conns").map_or(Some(8), |n| n.parse::<usize>().ok()).ok_or_else(usage)?.max(1),
    })
}

/// Serve granted blobs until idle.
pub fn run_server(layout: &Layout, o: &server::Options) -> Result<()> {
    server::run(layout, o)
}

/// Fetch `wanted` (hash, size) from the relay server at `peer` into the
/// store. Returns (blobs fetched, bytes).
pub fn fetch(
    layout: &Layout,
    peer: &str,
    secret: &str,
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
        fetch_one(layout, peer, secret, h, *size, &mut tick)
            .map_err(|e| crate::AgentError::new(format!("peer {peer}: {}", e.0)))?;
        n += 1;
        bytes += size;
    }
    Ok((n, bytes))
}

fn fetch_one(layout: &Layout, peer: &str, secret: &str, h: &Hash, size: u64, tick: &mut dyn FnMut(u64)) -> Result<()> {
    let addr = peer
        .to_socket_addrs()
        .ctx(|| "resolve".into())?
        .next()
        .ok_or_else(|| crate::AgentError::new("no address".into()))?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ctx(|| "connect".into())?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ctx(|| "socket".into())?;
    let mut w = stream.try_clone().ctx(|| "socket".into())?;
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    r.by_ref().take(512).read_line(&mut line).ctx(|| "read challenge".into())?;
    let nonce = match line.trim().split_once(' ') {
        Some((auth::PROTO, n)) => auth::unhex::<16>(n).ok_or_else(|| crate::AgentError::new("bad challenge".into()))?,
        Some(("ERR", why)) => bail!("refused: {why}"),
        _ => bail!("not a drover relay server (it said {:?})", line.trim()),
    };
    let mac = auth::mac(secret, &nonce, h, 0);
    writeln!(w, "{} 0 {}", h.to_hex(), auth::hex(&mac)).ctx(|| "send request".into())?;
    line.clear();
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        fs::create_dir_all(dir(&la)).unwrap();
        let secret = "0123456789abcdef0123456789abcdef";
        let g = Grant { secret: secret.into(), blobs: [h.to_hex()].into(), idle_ms: 2000 };
        crate::fsops::write_atomic(&grant_path(&la, port), &serde_json::to_vec(&g).unwrap()).unwrap();
        let la2 = la.clone();
        let o = server::Options { bind: "127.0.0.1".into(), port, max_conns: 4 };
        let server = std::thread::spawn(move || run_server(&la2, &o));
        while !pid_path(&la, port).exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let peer = format!("127.0.0.1:{port}");
        let wrong = fetch(&lb, &peer, "not-the-secret-at-all-not-at-all", &[(h, data.len() as u64)], &mut |_| {});
        assert!(wrong.unwrap_err().0.contains("not authorised"));
        let other = Hash([9; 32]);
        assert!(fetch(&lb, &peer, secret, &[(other, 5)], &mut |_| {}).is_err());
        let (n, bytes) = fetch(&lb, &peer, secret, &[(h, data.len() as u64)], &mut |_| {}).unwrap();
        assert_eq!((n, bytes), (1, data.len() as u64));
        assert_eq!(fs::read(lb.blob(&h)).unwrap(), data);
        let log = fs::read_to_string(log_path(&la, port)).unwrap();
        assert!(log.contains("refused: wrong secret"), "{log}");
        server.join().unwrap().unwrap();
    }

    #[test]
    fn serve_refuses_short_secrets_and_bad_addresses() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        let req = |bind, secret| ServeRequest { bind, port: 1, secret, blobs: &[], idle_ms: 1, max_conns: 1 };
        let long = "0123456789abcdef0123456789abcdef";
        assert!(serve(&l, &req("10.0.0.1", "short")).unwrap_err().0.contains("too short"));
        assert!(serve(&l, &req("", long)).unwrap_err().0.contains("bad listen address"));
        assert!(serve(&l, &req("a b", long)).unwrap_err().0.contains("bad listen address"));
    }

    #[test]
    fn server_args_need_a_bind_address() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let o = parse_args(&args("--port 7787 --bind 10.0.0.1 --max-conns 3")).unwrap();
        assert_eq!(o, server::Options { bind: "10.0.0.1".into(), port: 7787, max_conns: 3 });
        assert!(parse_args(&args("--port 7787")).is_err(), "no --bind accepted");
    }
}
