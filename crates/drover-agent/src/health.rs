//! Health probes: a command, a TCP port, or an HTTP URL, with retries.
//!
//! The HTTP probe is a hand-written `GET` over `TcpStream` reading only the
//! status line. A full client crate would add TLS stacks and hundreds of KiB
//! to a binary we push to every host, for a check that is always plain HTTP
//! on the host itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_proto::{HealthCheck, HealthProbe};

/// Probe until healthy or out of retries. `Err` says why the last attempt failed.
pub fn check(hc: &HealthCheck) -> Result<(), String> {
    check_in(hc, None)
}

/// [`check`], with a `command` probe run in `cwd` (a simulated host's root:
/// see [`crate::supervisor::fake`]).
pub fn check_in(hc: &HealthCheck, cwd: Option<&Path>) -> Result<(), String> {
    let timeout = Duration::from_millis(hc.timeout_ms.max(1));
    let mut last = String::new();
    for attempt in 0..hc.retries.max(1) {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(hc.interval_ms));
        }
        match probe(&hc.probe, timeout, cwd) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(format!("{} after {} attempts: {last}", describe(&hc.probe), hc.retries.max(1)))
}

pub fn describe(p: &HealthProbe) -> String {
    match p {
        HealthProbe::Command(c) => format!("health command `{c}`"),
        HealthProbe::Tcp { port } => format!("TCP port {port}"),
        HealthProbe::Http { url } => format!("GET {url}"),
    }
}

fn probe(p: &HealthProbe, timeout: Duration, cwd: Option<&Path>) -> Result<(), String> {
    match p {
        HealthProbe::Command(cmd) => command(cmd, timeout, cwd),
        HealthProbe::Tcp { port } => {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            TcpStream::connect_timeout(&addr, timeout).map(|_| ()).map_err(|e| e.to_string())
        }
        HealthProbe::Http { url } => http(url, timeout),
    }
}

fn command(cmd: &str, timeout: Duration, cwd: Option<&Path>) -> Result<(), String> {
    let mut sh = Command::new("/bin/sh");
    if let Some(dir) = cwd {
        sh.current_dir(dir);
    }
    let mut child = sh
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("exited with {st}")),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Split `http://host[:port][/path]`.
fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: bad port"))?),
        None => (hostport, 80),
    };
    Ok((host.to_string(), port, path.to_string()))
}

fn http(url: &str, timeout: Duration) -> Result<(), String> {
    let (host, port, path) = parse_url(url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    // One write: `write!` on a socket issues a syscall per piece, and a
    // server that answers after its first read and closes would reset the
    // connection under the rest of the request, losing its answer.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn url_parsing() {
        assert_eq!(parse_url("http://127.0.0.1:8080/x").unwrap(), ("127.0.0.1".into(), 8080, "/x".into()));
        assert_eq!(parse_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert!(parse_url("https://h").is_err());
    }

    fn serve_once(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                // Read the whole request before answering, as a real
                // server does (closing with unread bytes resets the link).
                let mut req = Vec::new();
                let mut buf = [0u8; 256];
                while !req.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(format!("HTTP/1.0 {status}\r\n\r\nbody").as_bytes());
            }
        });
        port
    }

    #[test]
    fn http_probe_reads_status() {
        let ok = serve_once("200 OK");
        assert!(http(&format!("http://127.0.0.1:{ok}/"), Duration::from_secs(2)).is_ok());
        let bad = serve_once("503 Unavailable");
        assert_eq!(http(&format!("http://127.0.0.1:{bad}/"), Duration::from_secs(2)).unwrap_err(), "HTTP 503");
    }

    #[test]
    fn command_probe_and_retries() {
        let hc =
            HealthCheck { probe: HealthProbe::Command("exit 3".into()), timeout_ms: 1000, retries: 2, interval_ms: 10 };
        let err = check(&hc).unwrap_err();
        assert!(err.contains("after 2 attempts"), "{err}");
        let hc =
            HealthCheck { probe: HealthProbe::Command("true".into()), timeout_ms: 1000, retries: 1, interval_ms: 0 };
        assert!(check(&hc).is_ok());
        let hc =
            HealthCheck { probe: HealthProbe::Command("sleep 5".into()), timeout_ms: 100, retries: 1, interval_ms: 0 };
        assert!(check(&hc).unwrap_err().contains("timed out"));
    }
}
