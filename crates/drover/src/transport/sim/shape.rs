//! The shaped link: latency, bandwidth and failures on the controller's
//! side of a simulated connection (see the [`super`] module's doc).

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::LinkShape;

/// Bytes accepted into a shaped direction before the writer must wait.
pub const WINDOW: usize = 256 * 1024;

/// A connection reset mid-session dies within this many bytes.
pub const CUT_RANGE: u64 = 16 * 1024;

/// splitmix64: plenty for drawing failures, no dependency.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A scheduled connection reset, shared by both directions of a link.
pub(super) struct Fault {
    /// Bytes (both directions) after which the link is dead; `u64::MAX`: never.
    pub(super) cut_after: AtomicU64,
    moved: AtomicU64,
}

impl Fault {
    pub(super) fn new() -> Fault {
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
pub(super) struct Pace {
    one_way: Duration,
    bandwidth: Option<u64>,
    /// When the link is done transmitting what it has been given.
    busy_until: Instant,
    fault: Arc<Fault>,
}

impl Pace {
    pub(super) fn new(shape: LinkShape, fault: Arc<Fault>) -> Pace {
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
    pub(super) fn new(inner: W, pace: Pace) -> Self {
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
    /// Where the agent's bytes are read into; dropped whenever the link
    /// goes idle (nothing in flight, nothing to read), so an idle link
    /// costs no buffer: the resident keeps thousands of them, and what a
    /// held host costs it must not be the simulation's own scratch space.
    scratch: Option<Box<[u8]>>,
}

/// How much of the agent's output one read takes in.
const SCRATCH: usize = 16 * 1024;

impl<R> ShapedRead<R> {
    pub(super) fn new(inner: R, pace: Pace) -> Self {
        ShapedRead { inner, pace, line: DelayLine::new(), eof: false, scratch: None }
    }
}

impl<R> ShapedRead<R> {
    /// Nothing in flight: give the buffers back.
    fn let_go(&mut self) {
        self.scratch = None;
        self.line.queue.shrink_to(0);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ShapedRead<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.pace.fault.pass(0)?;
        // Take in what the agent sent so far (it is "on the wire").
        while !this.eof && this.line.bytes < WINDOW {
            let scratch = this.scratch.get_or_insert_with(|| vec![0; SCRATCH].into_boxed_slice());
            let mut rb = ReadBuf::new(scratch);
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
                // All delivered: the reader may not come back for a long
                // time (a kept agent's link, read up to its `Detached`).
                if this.line.bytes == 0 {
                    this.let_go();
                }
                Poll::Ready(Ok(()))
            }
            // Nothing in flight: end of stream, or wait for the agent
            // (the inner read registered the waker).
            None if this.eof => Poll::Ready(Ok(())),
            None => {
                this.let_go();
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

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

    /// A link with nothing in flight and nothing to read keeps no read
    /// buffer (a resident holds thousands of idle links).
    #[tokio::test]
    async fn an_idle_link_holds_no_read_buffer() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, _aw) = tokio::io::split(a);
        let (_br, mut bw) = tokio::io::split(b);
        let mut r = ShapedRead::new(ar, Pace::new(shape(1, None), Arc::new(Fault::new())));
        bw.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        assert!(r.scratch.is_none(), "all delivered: nothing kept, even before the next read");
        let idle = tokio::time::timeout(Duration::from_millis(20), r.read(&mut buf)).await;
        assert!(idle.is_err(), "nothing more was sent");
        assert!(r.scratch.is_none() && r.line.queue.capacity() == 0);
        bw.write_all(b"yo").await.unwrap();
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"yo", "and reads again when there is");
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
