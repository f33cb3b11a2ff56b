//! Health probes: a command, a TCP port, or an HTTP URL, one attempt at a
//! time (the gate in [`crate::gate`] retries them, watching the supervisor
//! between attempts).
//!
//! The HTTP probe is a hand-written `GET` over `TcpStream`. A full client
//! crate would add TLS stacks and hundreds of KiB to a binary we push to
//! every host, for a check that is always plain HTTP on the host itself. It
//! reads the status line and headers, then the body up to a bound, so that
//! the connection ends with a FIN from both sides: closing a socket with
//! unread bytes makes the kernel answer with a reset, and the application
//! would log a `ConnectionResetError` for every probe.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_proto::{tail_lines, CommandOutput, HealthProbe, LOG_TAIL_BYTES, LOG_TAIL_LINES};

/// Why one attempt failed, with a `command` probe's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub message: String,
    pub output: Option<CommandOutput>,
}

impl From<String> for ProbeError {
    fn from(message: String) -> ProbeError {
        ProbeError { message, output: None }
    }
}

/// The most of a response the HTTP probe reads: head and body.
const HTTP_READ_MAX: usize = 64 * 1024;
/// The most of a health command's output kept (its tail).
const OUTPUT_KEEP: usize = 16 * 1024;

pub fn describe(p: &HealthProbe) -> String {
    match p {
        HealthProbe::Command(c) => format!("health command `{c}`"),
        HealthProbe::Tcp { port } => format!("TCP port {port}"),
        HealthProbe::Http { url } => format!("GET {url}"),
    }
}

/// One attempt of `p`, within `timeout`; a `command` probe runs in `cwd`
/// (a simulated host's root: see [`crate::supervisor::fake`]).
pub fn probe(p: &HealthProbe, timeout: Duration, cwd: Option<&Path>) -> Result<(), ProbeError> {
    match p {
        HealthProbe::Command(cmd) => command(cmd, timeout, cwd),
        HealthProbe::Tcp { port } => {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            TcpStream::connect_timeout(&addr, timeout).map(|_| ()).map_err(|e| e.to_string().into())
        }
        HealthProbe::Http { url } => http(url, timeout).map_err(ProbeError::from),
    }
}

fn command(cmd: &str, timeout: Duration, cwd: Option<&Path>) -> Result<(), ProbeError> {
    use std::os::unix::process::CommandExt;
    let mut sh = Command::new("/bin/sh");
    if let Some(dir) = cwd {
        sh.current_dir(dir);
    }
    // Its own process group: a timeout kills what it started too.
    let mut child = sh
        .args(["-c", cmd])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    let out = keep_tail(child.stdout.take());
    let err = keep_tail(child.stderr.take());
    let start = Instant::now();
    let (code, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(st)) => break (st.code(), false),
            Ok(None) if start.elapsed() > timeout => {
                if let Ok(pgid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) on the process group created above.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string().into()),
        }
    };
    if code == Some(0) {
        return Ok(());
    }
    // Something it left running in the background may hold the pipes
    // open: wait for the output briefly, never for that.
    let text = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        let bytes = rx.recv_timeout(Duration::from_millis(200)).unwrap_or_default();
        tail_lines(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES, LOG_TAIL_BYTES / 2).join("\n")
    };
    let output = CommandOutput { code, timed_out, stdout: text(out), stderr: text(err) };
    let message = match (code, timed_out) {
        (_, true) => format!("timed out after {timeout:?}"),
        (Some(c), false) => format!("exit status {c}"),
        (None, false) => "killed by a signal".to_string(),
    };
    let shown = [&output.stderr, &output.stdout].into_iter().find_map(|s| s.lines().last().map(str::to_string));
    let message = match shown {
        Some(line) => format!("{message}: {line}"),
        None => message,
    };
    Err(ProbeError { message, output: Some(output) })
}

/// Read a pipe to its end on a thread, keeping its last [`OUTPUT_KEEP`]
/// bytes; the result arrives on the channel.
fn keep_tail<R: Read + Send + 'static>(pipe: Option<R>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut p) = pipe {
            let mut buf = [0u8; 4096];
            while let Ok(n) = p.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_KEEP {
                    kept.drain(..kept.len() - OUTPUT_KEEP);
                }
            }
        }
        let _ = tx.send(kept);
    });
    rx
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
    use std::io::Write;
    let (host, port, path) = parse_url(url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    // One write: `write!` on a socket issues a syscall per piece, and a
    // server that answers after its first read and closes would reset the
    // connection under the rest of the request, losing its answer.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: drover-health\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if got.len() >= HTTP_READ_MAX {
            return Err(format!("no end of the response headers in its first {HTTP_READ_MAX} bytes"));
        }
        match read_some(&mut s, &mut got, start, timeout)? {
            0 if got.is_empty() => return Err("connection closed without a response".into()),
            0 => break got.len(),
            _ => {}
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let status = head.lines().next().unwrap_or("");
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .filter(|_| status.starts_with("HTTP/"))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {status:?}"))?;
    // The body, to its end (the server closes: `Connection: close`), or
    // its `Content-Length`, within the bound and the time left: then both
    // sides close with a FIN.
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    while got.len() < HTTP_READ_MAX && length.is_none_or(|n| got.len() < head_end + n) {
        match read_some(&mut s, &mut got, start, timeout) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
}

/// One `read` into `got`, within what is left of `timeout` since `start`.
fn read_some(s: &mut TcpStream, got: &mut Vec<u8>, start: Instant, timeout: Duration) -> Result<usize, String> {
    let left = timeout.checked_sub(start.elapsed()).filter(|d| !d.is_zero()).ok_or("timed out reading the response")?;
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    got.extend_from_slice(&buf[..n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn url_parsing() {
        assert_eq!(parse_url("http://127.0.0.1:8080/x").unwrap(), ("127.0.0.1".into(), 8080, "/x".into()));
        assert_eq!(parse_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert!(parse_url("https://h").is_err());
    }

    /// A server answering one request with `status` and a body of `body`
    /// bytes, then closing its side; it reports what it read after that:
    /// `Ok(0)` when the client closed cleanly (FIN), an error on a reset.
    fn serve_once(status: &'static str, body: usize) -> (u16, std::sync::mpsc::Receiver<std::io::Result<usize>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
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
                let head = format!("HTTP/1.0 {status}\r\nServer: test\r\nContent-Type: text/plain\r\n\r\n");
                let _ = s.write_all(&[head.as_bytes(), &vec![b'x'; body]].concat());
                let _ = s.shutdown(std::net::Shutdown::Write);
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = tx.send(s.read(&mut buf));
            }
        });
        (port, rx)
    }

    #[test]
    fn http_probe_reads_status() {
        let (ok, _) = serve_once("200 OK", 4);
        assert!(http(&format!("http://127.0.0.1:{ok}/"), Duration::from_secs(2)).is_ok());
        let (bad, _) = serve_once("503 Unavailable", 4);
        assert_eq!(http(&format!("http://127.0.0.1:{bad}/"), Duration::from_secs(2)).unwrap_err(), "HTTP 503");
    }

    /// The application sees the probe close its connection with a FIN,
    /// never a reset, whatever the size of its answer (the probe used to
    /// read 12 bytes and close with the rest unread: a reset).
    #[test]
    fn http_probe_closes_cleanly_after_reading_the_whole_answer() {
        for body in [0, 100, 3000, 200_000] {
            let (port, seen) = serve_once("200 OK", body);
            assert!(http(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2)).is_ok(), "body {body}");
            let after = seen.recv_timeout(Duration::from_secs(5)).unwrap();
            if body < HTTP_READ_MAX {
                assert!(matches!(after, Ok(0)), "body of {body} bytes: the server saw {after:?}, not a FIN");
            }
        }
    }

    #[test]
    fn a_command_probe_reports_its_exit_status_and_output() {
        let e = probe(
            &HealthProbe::Command("echo checking; echo 'db: connection refused' >&2; exit 3".into()),
            Duration::from_secs(5),
            None,
        )
        .unwrap_err();
        assert_eq!(e.message, "exit status 3: db: connection refused");
        let out = e.output.unwrap();
        assert_eq!((out.code, out.timed_out), (Some(3), false));
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("checking", "db: connection refused"));
        assert!(probe(&HealthProbe::Command("true".into()), Duration::from_secs(5), None).is_ok());
        let slow = probe(&HealthProbe::Command("echo started; sleep 5".into()), Duration::from_millis(100), None);
        let e = slow.unwrap_err();
        assert!(e.message.starts_with("timed out") && e.output.as_ref().unwrap().timed_out, "{e:?}");
    }
}
