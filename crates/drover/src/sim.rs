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
//! Supervisors are not driven on simulated roots (the agent knows: its root
//! is not `/`), and confirmation watchdogs run as threads when in-process.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use drover_spec::Host;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::agent_bin;
use crate::link::{Reader, Writer};
use crate::transport::{Transport, TransportError};

/// Bytes accepted into a shaped direction before the writer must wait.
pub const WINDOW: usize = 256 * 1024;

/// A connection reset mid-session dies within this many bytes.
pub const CUT_RANGE: u64 = 16 * 1024;

/// `--sim-*` flags, next to `--simulate DIR` on plan/apply/rollback.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Simulated transport (with --simulate)")]
pub struct SimArgs {
    /// Round-trip latency of every simulated link (e.g. 20ms).
    #[arg(long, value_name = "DURATION", requires = "simulate")]
    pub sim_latency: Option<String>,
    /// Bandwidth of every simulated link, each direction (e.g. 1mbit, 64kbit, 10mbps).
    #[arg(long, value_name = "RATE", requires = "simulate")]
    pub sim_bandwidth: Option<String>,
    /// Fraction of connections that fail (refused, or reset mid-session), 0 to 1.
    #[arg(long, value_name = "P", default_value_t = 0.0, requires = "simulate")]
    pub sim_failure_rate: f64,
    /// One local agent process per connection instead of in-process agents.
    #[arg(long, requires = "simulate")]
    pub sim_processes: bool,
}

impl SimArgs {
    /// The transport for `--simulate base` with these settings.
    pub fn transport(&self, base: &Path) -> anyhow::Result<Transport> {
        let latency = match &self.sim_latency {
            Some(s) => drover_spec::parse_duration(s).map_err(anyhow::Error::msg)?,
            None => Duration::ZERO,
        };
        let bandwidth = self.sim_bandwidth.as_deref().map(parse_rate).transpose().map_err(anyhow::Error::msg)?;
        if !(0.0..=1.0).contains(&self.sim_failure_rate) {
            anyhow::bail!("--sim-failure-rate {} is not between 0 and 1", self.sim_failure_rate);
        }
        let shape = LinkShape { latency, bandwidth, failure_rate: self.sim_failure_rate };
        Ok(Transport::Sim(Arc::new(Sim::new(std::path::absolute(base)?, shape, self.sim_processes))))
    }
}

/// A rate in tc's units: `bit`, `kbit`, `mbit`, `gbit` (bits per second) or
/// `bps`, `kbps`, `mbps`, `gbps` (bytes per second). Returns bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("bad rate {s:?}: write e.g. 1mbit, 256kbit or 10mbps");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bytes_per_sec = match unit {
        "bit" => n / 8.0,
        "kbit" => n * 1e3 / 8.0,
        "mbit" => n * 1e6 / 8.0,
        "gbit" => n * 1e9 / 8.0,
        "bps" => n,
        "kbps" => n * 1e3,
        "mbps" => n * 1e6,
        "gbps" => n * 1e9,
        _ => return Err(bad()),
    };
    if !(1.0..=1e12).contains(&bytes_per_sec) {
        return Err(format!("rate {s:?} out of range"));
    }
    Ok(bytes_per_sec as u64)
}

/// What every simulated link looks like.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkShape {
    /// Round trip; each direction gets half.
    pub latency: Duration,
    /// Bytes per second, each direction; `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Fraction of connections that fail.
    pub failure_rate: f64,
}

impl LinkShape {
    fn shaped(&self) -> bool {
        !self.latency.is_zero() || self.bandwidth.is_some() || self.failure_rate > 0.0
    }
}

#[derive(Debug)]
pub struct Sim {
    base: PathBuf,
    shape: LinkShape,
    processes: bool,
    /// The agent binary, written once per run (process mode).
    agent: OnceLock<Result<PathBuf, String>>,
    /// Connections opened, to vary the random draws.
    opened: AtomicU64,
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
        if !processes {
            drover_agent::watchdog::IN_PROCESS.store(true, Ordering::Relaxed);
        }
        Sim { base, shape, processes, agent: OnceLock::new(), opened: AtomicU64::new(0) }
    }

    pub fn root(&self, host: &str) -> PathBuf {
        self.base.join(host)
    }

    /// Open a byte stream to `host`'s agent: (to agent, from agent, guard).
    pub async fn open(&self, host: &Host) -> Result<(Writer, Reader, Guard), TransportError> {
        let root = self.root(&host.name);
        ensure_root(&root, &host.name).map_err(|e| TransportError::Start(format!("{}: {e}", root.display())))?;
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
        let (w, r, guard): (Writer, Reader, Guard) =
            if self.processes { self.spawn_process(&root).await? } else { spawn_thread(root)? };
        if !self.shape.shaped() {
            return Ok((w, r, guard));
        }
        let w = ShapedWrite::new(w, Pace::new(self.shape, fault.clone()));
        let r = ShapedRead::new(r, Pace::new(self.shape, fault));
        Ok((Box::new(w), Box::new(r), guard))
    }

    async fn spawn_process(&self, root: &Path) -> Result<(Writer, Reader, Guard), TransportError> {
        let agent = self
            .agent
            .get_or_init(|| {
                let p = self.base.join(".drover-agent");
                agent_bin::materialize(&p).map(|()| p.clone()).map_err(|e| format!("{}: {e}", p.display()))
            })
            .clone()
            .map_err(TransportError::Start)?;
        let mut child = tokio::process::Command::new(&agent)
            .arg("serve")
            .arg("--root")
            .arg(root)
            // This machine is the controller: the agent must never reboot it.
            .arg(drover_agent::boot::SIMULATED_FLAG)
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
    let input = theirs.try_clone().map_err(start)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sim-agent".into())
        .stack_size(1 << 20)
        .spawn(move || {
            let layout = drover_agent::layout::Layout::new(root);
            if let Err(e) = drover_agent::serve::serve(layout, drover_agent::boot::HostEnv::Simulated, input, &theirs) {
                tracing::debug!("simulated agent: {e}");
            }
            // Closing our end is the agent process exiting: the controller
            // sees end of stream.
            let _ = theirs.shutdown(std::net::Shutdown::Both);
            let _ = done_tx.send(());
        })
        .map_err(start)?;
    ours.set_nonblocking(true).map_err(start)?;
    let (r, w) = tokio::net::UnixStream::from_std(ours).map_err(start)?.into_split();
    Ok((Box::new(w), Box::new(r), Guard::Thread(done_rx)))
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

/// splitmix64: plenty for drawing failures, no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A scheduled connection reset, shared by both directions of a link.
struct Fault {
    /// Bytes (both directions) after which the link is dead; `u64::MAX`: never.
    cut_after: AtomicU64,
    moved: AtomicU64,
}

impl Fault {
    fn new() -> Fault {
        Fault { cut_after: AtomicU64::new(u64::MAX), moved: AtomicU64::new(0) }
    }

    /// Count `n` more bytes; an error once the cut point is passed.
    fn pass(&self, n: usize) -> io::Result<()> {
        let moved = self.moved.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if moved > self.cut_after.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset (simulated failure)"));
        }
        Ok(())
    }
}

/// One direction of a link: when each byte arrives at the far end.
struct Pace {
    one_way: Duration,
    bandwidth: Option<u64>,
    /// When the link is done transmitting what it has been given.
    busy_until: Instant,
    fault: Arc<Fault>,
}

impl Pace {
    fn new(shape: LinkShape, fault: Arc<Fault>) -> Pace {
        Pace { one_way: shape.latency / 2, bandwidth: shape.bandwidth, busy_until: Instant::now(), fault }
    }

    /// `n` bytes handed to the link now: when they are all at the far end.
    fn arrival(&mut self, n: usize) -> Instant {
        let now = Instant::now();
        let tx = self.bandwidth.map_or(Duration::ZERO, |b| Duration::from_secs_f64(n as f64 / b as f64));
        self.busy_until = self.busy_until.max(now) + tx;
        self.busy_until + self.one_way
    }
}

/// Bytes in flight, each batch with its arrival time.
struct DelayLine {
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// Bytes of the front batch already delivered.
    front_pos: usize,
    bytes: usize,
    sleep: Pin<Box<Sleep>>,
}

impl DelayLine {
    fn new() -> DelayLine {
        DelayLine {
            queue: VecDeque::new(),
            front_pos: 0,
            bytes: 0,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    fn push(&mut self, at: Instant, data: Vec<u8>) {
        self.bytes += data.len();
        self.queue.push_back((at, data));
    }

    /// The front batch once it has arrived; `Pending` (with a timer) before.
    /// `Ready(None)`: nothing in flight.
    fn poll_front(&mut self, cx: &mut Context<'_>) -> Poll<Option<&[u8]>> {
        let Some((at, _)) = self.queue.front() else { return Poll::Ready(None) };
        if *at > Instant::now() {
            self.sleep.as_mut().reset(*at);
            ready!(self.sleep.as_mut().poll(cx));
        }
        let (_, data) = &self.queue[0];
        Poll::Ready(Some(&data[self.front_pos..]))
    }

    fn consume(&mut self, n: usize) {
        self.front_pos += n;
        self.bytes -= n;
        if self.queue.front().is_some_and(|(_, d)| d.len() == self.front_pos) {
            self.queue.pop_front();
            self.front_pos = 0;
        }
    }
}

/// The controller → agent direction: writes are accepted into the delay
/// line (up to [`WINDOW`]) and reach the agent when they arrive; a flush
/// waits until everything has.
pub struct ShapedWrite<W> {
    inner: W,
    pace: Pace,
    line: DelayLine,
}

impl<W> ShapedWrite<W> {
    fn new(inner: W, pace: Pace) -> Self {
        ShapedWrite { inner, pace, line: DelayLine::new() }
    }
}

impl<W: AsyncWrite + Unpin> ShapedWrite<W> {
    /// Move arrived bytes to the agent; `Ready` when nothing is in flight.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(data) = ready!(self.line.poll_front(cx)) else { return Poll::Ready(Ok(())) };
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.line.consume(n);
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ShapedWrite<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.pace.fault.pass(0)?;
        // Progress in flight, and wait while the window is full.
        let drained = this.poll_drain(cx)?;
        if this.line.bytes >= WINDOW {
            ready!(drained);
        }
        let n = buf.len().min(WINDOW.saturating_sub(this.line.bytes));
        this.pace.fault.pass(n)?;
        let at = this.pace.arrival(n);
        this.line.push(at, buf[..n].to_vec());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.pace.fault.pass(0)?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The agent → controller direction: what the agent wrote becomes readable
/// when it arrives.
pub struct ShapedRead<R> {
    inner: R,
    pace: Pace,
    line: DelayLine,
    eof: bool,
    scratch: Box<[u8]>,
}

impl<R> ShapedRead<R> {
    fn new(inner: R, pace: Pace) -> Self {
        ShapedRead { inner, pace, line: DelayLine::new(), eof: false, scratch: vec![0; 16 * 1024].into_boxed_slice() }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ShapedRead<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.pace.fault.pass(0)?;
        // Take in what the agent sent so far (it is "on the wire").
        while !this.eof && this.line.bytes < WINDOW {
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => this.eof = true,
                Poll::Ready(Ok(())) => {
                    let data = rb.filled().to_vec();
                    this.pace.fault.pass(data.len())?;
                    let at = this.pace.arrival(data.len());
                    this.line.push(at, data);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        match ready!(this.line.poll_front(cx)) {
            Some(data) => {
                let n = data.len().min(buf.remaining());
                buf.put_slice(&data[..n]);
                this.line.consume(n);
                Poll::Ready(Ok(()))
            }
            // Nothing in flight: end of stream, or wait for the agent
            // (the inner read registered the waker).
            None if this.eof => Poll::Ready(Ok(())),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1mbit"), Ok(125_000));
        assert_eq!(parse_rate("64kbit"), Ok(8_000));
        assert_eq!(parse_rate("10mbps"), Ok(10_000_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0bit").is_err());
    }

    fn shape(latency_ms: u64, bandwidth: Option<u64>) -> LinkShape {
        LinkShape { latency: Duration::from_millis(latency_ms), bandwidth, failure_rate: 0.0 }
    }

    /// An echo round trip through a shaped pair takes the round-trip latency.
    /// (Lower bounds are the point; upper bounds are loose for a busy CI box.)
    #[tokio::test]
    async fn latency_is_round_trip() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let fault = Arc::new(Fault::new());
        let mut w = ShapedWrite::new(aw, Pace::new(shape(100, None), fault.clone()));
        let mut r = ShapedRead::new(ar, Pace::new(shape(100, None), fault));
        tokio::spawn(async move {
            let (mut br, mut bw) = tokio::io::split(b);
            let mut buf = [0u8; 5];
            br.read_exact(&mut buf).await.unwrap();
            bw.write_all(&buf).await.unwrap();
        });
        let t = std::time::Instant::now();
        w.write_all(b"hello").await.unwrap();
        w.flush().await.unwrap();
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).await.unwrap();
        let took = t.elapsed();
        assert_eq!(&buf, b"hello");
        assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(600), "{took:?}");
    }

    /// 64 KiB at 256 KiB/s takes a quarter second, latency or not.
    #[tokio::test]
    async fn bandwidth_paces_writes() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = ShapedWrite::new(a, Pace::new(shape(10, Some(256 * 1024)), Arc::new(Fault::new())));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            b.read_exact(&mut buf).await.unwrap();
        });
        let t = std::time::Instant::now();
        w.write_all(&vec![7u8; 64 * 1024]).await.unwrap();
        w.flush().await.unwrap();
        reader.await.unwrap();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(900), "{took:?}");
    }

    #[tokio::test]
    async fn a_cut_link_fails_both_ways() {
        let (a, _b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let fault = Arc::new(Fault::new());
        fault.cut_after.store(10, Ordering::Relaxed);
        let mut w = ShapedWrite::new(aw, Pace::new(shape(0, None), fault.clone()));
        let mut r = ShapedRead::new(ar, Pace::new(shape(0, None), fault));
        w.write_all(b"0123456789").await.unwrap();
        assert_eq!(w.write_all(b"x").await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        let mut buf = [0u8; 1];
        assert_eq!(r.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    }
}
