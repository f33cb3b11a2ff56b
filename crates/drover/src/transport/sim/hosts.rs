//! Simulated hosts for a resident (`[ssh] persist` with `--simulate`): a
//! process of their own that the resident reaches over a Unix socket, one
//! connection per host, as it reaches real hosts over TCP.
//!
//! The agents are the hosts' side, so they do not live in the resident: its
//! memory per held host is then the resident's own, as on a real fleet. The
//! resident starts this process (`drover resident --sim-hosts`) with a pipe
//! on its stdin and keeps the pipe's other end: when the resident exits,
//! for whatever reason, the hosts go with it. Each connection names its
//! host and is served by an in-process agent (threads, as `--simulate`'s
//! default) in that host's root under the base directory; the link's shape
//! (latency, bandwidth, failures) is applied on the resident's side, where
//! a real link's would be felt ([`super::Sim::shaped`]).
//!
//! ```text
//! resident → hosts   len u16 LE · host name   (then the agent protocol's bytes)
//! ```

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::super::link::{Reader, Writer};
use super::{agent_thread, ensure_root};

/// Serve the hosts under `base` at `socket` until stdin ends (the resident
/// that started us is gone). Prints `ready` on stdout once listening.
pub fn serve(base: &Path, socket: &Path) -> io::Result<()> {
    crate::transport::raise_fd_limit();
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    }
    let base = base.to_path_buf();
    std::thread::Builder::new().name("sim-hosts".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream.and_then(|s| accept(&base, s)) {
                Ok(()) => {}
                Err(e) => tracing::debug!("simulated hosts: {e}"),
            }
        }
    })?;
    println!("ready");
    io::stdout().flush()?;
    let mut sink = [0u8; 64];
    while io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// One connection: check it comes from our own uid, read the host's name,
/// and give it that host's agent.
fn accept(base: &Path, mut s: UnixStream) -> io::Result<()> {
    let uid = peer_uid(&s)?;
    if uid != crate::transport::resident::euid() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("refused uid {uid}")));
    }
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut name = vec![0u8; usize::from(u16::from_le_bytes(len))];
    s.read_exact(&mut name)?;
    let name = String::from_utf8(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "name not UTF-8"))?;
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a host name: {name:?}")));
    }
    let root = base.join(&name);
    ensure_root(&root, &name)?;
    agent_thread(root, s, None)
}

/// The uid of the process at the other end of `s` (SO_PEERCRED; std's
/// `peer_cred` is not stable).
fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes a ucred into the buffer we own, whose
    // size we pass; the descriptor is the open socket `s` borrows.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// A connection to `host`'s agent in the simulated hosts' process at
/// `socket` (unshaped: the caller shapes it).
pub async fn connect(socket: &Path, host: &str) -> io::Result<(Writer, Reader)> {
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    let len = u16::try_from(host.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
    let mut b = len.to_le_bytes().to_vec();
    b.extend_from_slice(host.as_bytes());
    s.write_all(&b).await?;
    let (r, w) = s.into_split();
    Ok((Box::new(w), Box::new(r)))
}

/// The simulated hosts' process a resident started, and where it listens.
pub struct Process {
    pub socket: PathBuf,
    /// Its stdin: dropped (with the resident), the process exits.
    child: std::process::Child,
}

impl Process {
    /// Start `exe resident --sim-hosts` for `base`, listening at `socket`,
    /// and wait for it to say it is ready.
    pub fn start(exe: &Path, base: &Path, socket: &Path) -> io::Result<Process> {
        let mut child = std::process::Command::new(exe)
            .args(["resident", "--sim-hosts", "--idle-ms", "0", "--socket"])
            .arg(socket)
            .arg("--simulate")
            .arg(base)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let mut out = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
        let mut line = [0u8; 6];
        out.read_exact(&mut line)?;
        if &line != b"ready\n" {
            let _ = child.kill();
            return Err(io::Error::other("the simulated hosts did not start"));
        }
        Ok(Process { socket: socket.to_path_buf(), child })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Closing its stdin ends it; waiting reaps it (it exits at once).
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
