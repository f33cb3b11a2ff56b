//! Simulated hosts for scale tests and benchmarks: thousands of hosts on one
//! machine, over links as slow and unreliable as asked for.
//!
//! Each host is a directory `<base>/<host>` served by the real agent code
//! (`drover_agent::serve`), either in-process on a thread of its own over a
//! Unix socket pair (the default: a 10,000-host run needs no 10,000
//! processes) or, with `--sim-processes`, as one local `drover-agent serve
//! --root` process per connection. A missing host directory is created with
//! a minimal skeleton (hostname, runit's `sv` and `/etc/service`), so an
//! inventory is all a simulated fleet needs.
//!
//! The link is shaped on the controller's side by [`ShapedRead`] and
//! [`ShapedWrite`]: a delay line per direction (half the round-trip latency
//! each way), paced to the bandwidth, with at most [`WINDOW`] bytes in
//! flight (like a TCP window). With a failure rate, that fraction of
//! connections fails: half are refused outright, half are reset after a
//! random number of bytes (up to [`CUT_RANGE`]); both count as transient, so
//! they exercise the runner's retries.
//!
//! The agent runs in its simulated host environment (`HostEnv::Simulated`,
//! chosen here, never guessed from the root): services go through the real
//! restart, reload and health-check path against a fake supervisor that
//! records its calls in the host's root (`drover_agent::supervisor::fake`),
//! the host never reboots, and confirmation watchdogs run as threads when
//! in-process.
//!
//! By default a link is what a fleet across the internet looks like (see
//! [`args`]): 50 ms round trip, 100 mbit each way, 0.5 % of connections
//! failing; `--sim-latency 0 --sim-bandwidth 0 --sim-failure-rate 0` is the
//! ideal link.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use drover_spec::Host;

use super::error::TransportError;
use super::link::{Reader, Writer};
use crate::agent_bin;

mod args;
pub mod hosts;
mod shape;

pub use args::{parse_rate, LinkShape, SimArgs};
use shape::{Fault, Pace, SplitMix};
pub use shape::{ShapedRead, ShapedWrite, CUT_RANGE, WINDOW};

/// What a new connection's draw decided (see [`Sim::fate`]).
pub struct Fate(Arc<Fault>);

#[derive(Debug)]
pub struct Sim {
    base: PathBuf,
    shape: LinkShape,
    processes: bool,
    /// The agent binary, written once per run (process mode).
    agent: OnceLock<Result<PathBuf, String>>,
    /// Connections opened, to vary the random draws.
    opened: AtomicU64,
    /// [`agent_cpu`] when this simulation began.
    start: (u64, Duration),
}

/// Says how much CPU the in-process agents used (to stderr, once the run is
/// over): the rest of the process's CPU is the controller's.
impl Drop for Sim {
    fn drop(&mut self) {
        let (sessions, cpu) = agent_cpu();
        let (sessions, cpu) = (sessions - self.start.0, cpu.saturating_sub(self.start.1));
        if !self.processes && sessions > 0 {
            eprintln!(
                "simulated agents: {sessions} sessions used {:.1} s of CPU (the hosts' own on a real fleet)",
                cpu.as_secs_f64()
            );
        }
    }
}

/// CPU time (microseconds) and sessions of the in-process agents' threads,
/// summed as each session ends: on a real fleet this CPU is the hosts' own,
/// so a benchmark must be able to tell it from the controller's.
static AGENT_CPU_US: AtomicU64 = AtomicU64::new(0);
static AGENT_SESSIONS: AtomicU64 = AtomicU64::new(0);

/// The in-process agents' sessions so far and the CPU they used (this
/// process, every [`Sim`] together).
pub fn agent_cpu() -> (u64, Duration) {
    (AGENT_SESSIONS.load(Ordering::Relaxed), Duration::from_micros(AGENT_CPU_US.load(Ordering::Relaxed)))
}

/// CPU time (user + system) the calling thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only fills the struct it is given (RUSAGE_THREAD: Linux).
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let us =
        |t: libc::timeval| u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_micros(us(u.ru_utime) + us(u.ru_stime))
}

/// Keeps a simulated agent alive for the length of a connection.
pub enum Guard {
    Thread(tokio::sync::oneshot::Receiver<()>),
    Child(tokio::process::Child),
}

impl Guard {
    /// Wait (briefly) for the agent to finish its session, so the host lock
    /// is free for the next connection to the same host.
    pub async fn close(self) {
        match self {
            Guard::Thread(done) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
            }
            Guard::Child(mut c) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
            }
        }
    }
}

impl Sim {
    pub fn new(base: PathBuf, shape: LinkShape, processes: bool) -> Sim {
        let start = agent_cpu();
        Sim { base, shape, processes, agent: OnceLock::new(), opened: AtomicU64::new(0), start }
    }

    /// The directory the hosts' roots are in.
    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn root(&self, host: &str) -> PathBuf {
        self.base.join(host)
    }

    /// Open a byte stream to `host`'s agent: (to agent, from agent, guard).
    pub async fn open(&self, host: &Host) -> Result<(Writer, Reader, Guard), TransportError> {
        let root = self.root(&host.name);
        ensure_root(&root, &host.name).map_err(|e| TransportError::Start(format!("{}: {e}", root.display())))?;
        let fate = self.fate(host)?;
        let (w, r, guard): (Writer, Reader, Guard) =
            if self.processes { self.spawn_process(&root).await? } else { spawn_thread(root)? };
        let (w, r) = self.shaped(w, r, fate);
        Ok((w, r, guard))
    }

    /// The draw for one new connection to `host`: refused now (an error),
    /// or a link that is cut after some bytes, or a sound one.
    pub fn fate(&self, host: &Host) -> Result<Fate, TransportError> {
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix(seed(&host.name, n));
        let fault = Arc::new(Fault::new());
        if self.shape.failure_rate > 0.0 && rng.unit() < self.shape.failure_rate {
            if rng.next().is_multiple_of(2) {
                let source = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused (simulated failure)");
                return Err(drover_ssh::SshError::Connect { addr: host.address.clone(), source }.into());
            }
            fault.cut_after.store(rng.next() % CUT_RANGE, Ordering::Relaxed);
        }
        Ok(Fate(fault))
    }

    /// `w` and `r` (the controller's ends of a connection to an agent) as
    /// the link this simulation describes: latency, bandwidth, `fate`.
    pub fn shaped(&self, w: Writer, r: Reader, fate: Fate) -> (Writer, Reader) {
        if !self.shape.shaped() {
            return (w, r);
        }
        let w = ShapedWrite::new(w, Pace::new(self.shape, fate.0.clone()));
        let r = ShapedRead::new(r, Pace::new(self.shape, fate.0));
        (Box::new(w), Box::new(r))
    }

    /// Everything that makes this simulation what it is, for naming a
    /// resident that serves it (`resident::socket_name`): the hosts' base
    /// directory and the link. Whether agents are threads or processes is
    /// the hosts' side, not the link's, and is left out.
    pub fn identity(&self) -> String {
        let s = self.shape;
        format!("sim|{}|{:?}|{:?}|{}", self.base.display(), s.latency, s.bandwidth, s.failure_rate)
    }

    /// The command-line flags that make this simulation again (the
    /// resident is started with them).
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let s = self.shape;
        let mut a: Vec<std::ffi::OsString> = vec!["--simulate".into(), self.base.clone().into_os_string()];
        a.push("--sim-latency".into());
        a.push(format!("{}ms", s.latency.as_millis()).into());
        a.push("--sim-bandwidth".into());
        a.push(s.bandwidth.map_or("0".to_string(), |b| format!("{b}bps")).into());
        a.push("--sim-failure-rate".into());
        a.push(s.failure_rate.to_string().into());
        a
    }

    async fn spawn_process(&self, root: &Path) -> Result<(Writer, Reader, Guard), TransportError> {
        let agent = self
            .agent
            .get_or_init(|| {
                // The simulated hosts run on this machine: they run, and
                // report in their facts, the agent for its architecture.
                let arch = agent_bin::Arch::controller();
                let Some(agent) = agent_bin::for_arch(&arch) else {
                    return Err(format!(
                        "simulated hosts run on this machine ({arch}), and this drover carries agents only for {}",
                        agent_bin::arch_list(&agent_bin::carried())
                    ));
                };
                let p = self.base.join(".drover-agent");
                agent.materialize(&p).map(|()| p.clone()).map_err(|e| format!("{}: {e}", p.display()))
            })
            .clone()
            .map_err(TransportError::Start)?;
        let mut child = tokio::process::Command::new(&agent)
            .arg("serve")
            .arg("--root")
            .arg(root)
            // This machine is the controller: the agent must never reboot it.
            .arg(drover_agent::hostenv::SIMULATED_FLAG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TransportError::Start(format!("{}: {e}", agent.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(TransportError::Start("no pipes".into()));
        };
        Ok((Box::new(stdin), Box::new(stdout), Guard::Child(child)))
    }
}

/// The agent on a thread of this process, over a Unix socket pair.
fn spawn_thread(root: PathBuf) -> Result<(Writer, Reader, Guard), TransportError> {
    let start = |e: io::Error| TransportError::Start(format!("in-process agent: {e}"));
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(start)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    agent_thread(root, theirs, Some(done_tx)).map_err(start)?;
    ours.set_nonblocking(true).map_err(start)?;
    let (r, w) = tokio::net::UnixStream::from_std(ours).map_err(start)?.into_split();
    Ok((Box::new(w), Box::new(r), Guard::Thread(done_rx)))
}

/// Serve the agent for `root` on `theirs` (the host's end of a connection)
/// on a thread of its own, until the controller's end closes; `done` is
/// told once the agent has finished.
fn agent_thread(
    root: PathBuf,
    theirs: std::os::unix::net::UnixStream,
    done: Option<tokio::sync::oneshot::Sender<()>>,
) -> io::Result<()> {
    std::thread::Builder::new().name("sim-agent".into()).stack_size(1 << 20).spawn(move || {
        let layout = drover_agent::layout::Layout::new(root);
        // One descriptor for both directions (not a clone for input): the
        // resident's simulated hosts' process holds one per kept agent,
        // tens of thousands of them.
        if let Err(e) = drover_agent::serve::serve(layout, drover_agent::hostenv::HostEnv::InProcess, &theirs, &theirs)
        {
            tracing::debug!("simulated agent: {e}");
        }
        // Counted before the controller can see the session end.
        AGENT_CPU_US.fetch_add(u64::try_from(thread_cpu().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        AGENT_SESSIONS.fetch_add(1, Ordering::Relaxed);
        // Closing our end is the agent process exiting: the controller
        // sees end of stream.
        let _ = theirs.shutdown(std::net::Shutdown::Both);
        if let Some(done) = done {
            let _ = done.send(());
        }
    })?;
    Ok(())
}

/// A fresh simulated host: enough of a root for the agent's facts to find a
/// hostname and a supervisor (runit), so projects with services compile.
pub fn ensure_root(root: &Path, name: &str) -> io::Result<()> {
    if root.join("etc/hostname").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(root.join("etc/service"))?;
    std::fs::create_dir_all(root.join("usr/bin"))?;
    std::fs::write(root.join("usr/bin/sv"), b"")?;
    std::fs::write(root.join("etc/os-release"), b"ID=debian\nVERSION_ID=\"12\"\n")?;
    // Last: its presence means the skeleton is complete.
    std::fs::write(root.join("etc/hostname"), format!("{name}\n"))
}

/// Create simulated roots for `names` under `base` (benchmarks do this ahead
/// of time so the first run measures deployment, not `mkdir`).
pub fn init_roots<'a>(base: &Path, names: impl IntoIterator<Item = &'a str>) -> io::Result<usize> {
    let mut n = 0;
    for name in names {
        ensure_root(&base.join(name), name)?;
        n += 1;
    }
    Ok(n)
}

fn seed(host: &str, n: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let h = blake3::hash(host.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b) ^ nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
