//! One client's bytes to and from a host's agent, and whether the agent
//! may be kept for the next client: only when its last words were
//! `Detached` (the session ended cleanly and the agent holds nothing) and
//! the client then left. Anything else (a client gone mid-session, an
//! agent gone) ends the agent's stream exactly as a dropped SSH connection
//! does without the resident.

use std::sync::atomic::{AtomicBool, Ordering};

use drover_proto::frame::encode;
use drover_proto::{Request, Response};
use drover_ssh::{ExitWaiter, RemoteProcess};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

/// A host's agent over the resident's held session: its pipes, and the
/// channel's end (checked before the agent is used again).
pub struct Agent {
    stdin: Box<dyn AsyncWrite + Send + Unpin>,
    stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// `None` for a simulated host's: its link has no exit status to
    /// watch; an agent gone is seen by the next client's hello, which then
    /// goes direct (and the resident starts another).
    exit: Option<ExitWaiter>,
}

impl Agent {
    pub fn new(p: RemoteProcess) -> Agent {
        let (stdin, stdout, exit) = p.into_parts();
        Agent { stdin, stdout, exit: Some(exit) }
    }

    /// A simulated host's agent, over its (shaped) link.
    pub fn sim(stdin: Box<dyn AsyncWrite + Send + Unpin>, stdout: Box<dyn AsyncRead + Send + Unpin>) -> Agent {
        Agent { stdin, stdout, exit: None }
    }

    /// Has its channel closed (the agent exited, or the session died)?
    pub fn ended(&mut self) -> bool {
        self.exit.as_mut().is_some_and(ExitWaiter::ended)
    }
}

/// How a splice ended.
pub enum Ended {
    /// The agent detached and the client left: keep it for the next one.
    Kept(Agent),
    /// The client left without a word from the agent (a host that froze
    /// under a kept agent, most likely): the held session is suspect.
    Silent,
    /// Anything else: the agent's stream is ended, as a dropped connection's.
    Done,
}

/// After the client left mid-session, how long the agent's last words are
/// still read before its channel is dropped (a frozen host says nothing).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Splice `client` to `agent` until one of them is done.
///
/// A client ends its session with `Detach` and leaves without waiting for
/// the answer (one round trip to the host saved per host and command): the
/// agent's input is then left open, and the agent kept once its `Detached`
/// arrives (within [`DRAIN`]).
pub async fn splice(client: UnixStream, agent: Agent) -> Ended {
    let Agent { mut stdin, mut stdout, exit } = agent;
    let (from_client, mut to_client) = client.into_split();
    let detached = AtomicBool::new(false);
    // The client left, its last frame `Detach`.
    let left_detaching = AtomicBool::new(false);
    let (stop, down_done) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
    let up = async {
        let mut from_client = Tail::new(from_client, detach_request());
        let copied = tokio::io::copy(&mut from_client, &mut stdin).await;
        if copied.is_ok() && detached.load(Ordering::SeqCst) {
            // The agent waits for its next Hello; nothing more comes from it.
            stop.notify_one();
            return;
        }
        if copied.is_ok() && from_client.ends_with_want() {
            left_detaching.store(true, Ordering::SeqCst);
            // The answer may have come meanwhile.
            if detached.load(Ordering::SeqCst) {
                stop.notify_one();
                return;
            }
        } else {
            // The client's end of input is the agent's (it ends its session).
            let _ = stdin.shutdown().await;
        }
        tokio::select! {
            () = tokio::time::sleep(DRAIN) => stop.notify_one(),
            () = down_done.notified() => {}
        }
    };
    let down = async {
        let mut frames = Frames::default();
        let mut buf = vec![0u8; 16 << 10];
        let (mut heard, mut client_gone) = (false, false);
        let kept = loop {
            let n = tokio::select! {
                read = stdout.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => n,
                },
                () = stop.notified() => break detached.load(Ordering::SeqCst),
            };
            heard = true;
            let now = frames.feed(&buf[..n]);
            detached.store(now, Ordering::SeqCst);
            // A client gone mid-session: its agent's last words are still
            // read (until it ends, or DRAIN), as before.
            if !client_gone && to_client.write_all(&buf[..n]).await.is_err() {
                client_gone = true;
            }
            if now && left_detaching.load(Ordering::SeqCst) {
                break true;
            }
        };
        down_done.notify_one();
        (kept, heard)
    };
    let ((), (kept, heard)) = tokio::join!(up, down);
    if !kept {
        let _ = to_client.shutdown().await;
        return if heard { Ended::Done } else { Ended::Silent };
    }
    Ended::Kept(Agent { stdin, stdout, exit })
}

/// The encoded `Detach` request: the last frame of a client that detaches.
fn detach_request() -> Vec<u8> {
    encode(&Request::Detach).unwrap_or_default()
}

/// A reader that remembers the last bytes read, as many as `want` has.
struct Tail<R> {
    inner: R,
    want: Vec<u8>,
    tail: Vec<u8>,
}

impl<R> Tail<R> {
    fn new(inner: R, want: Vec<u8>) -> Tail<R> {
        Tail { inner, tail: Vec::with_capacity(want.len()), want }
    }

    /// Did the stream so far end with exactly `want`'s bytes? (A frame whose
    /// body merely ends with them could pass: the agent then never says
    /// `Detached`, and the agent is dropped after [`DRAIN`], as any client
    /// gone mid-session.)
    fn ends_with_want(&self) -> bool {
        !self.want.is_empty() && self.tail == self.want
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tail<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        let keep = this.want.len();
        if new.len() >= keep {
            this.tail.clear();
            this.tail.extend_from_slice(&new[new.len() - keep..]);
        } else {
            this.tail.extend_from_slice(new);
            let extra = this.tail.len().saturating_sub(keep);
            this.tail.drain(..extra);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// Frame boundaries of the agent's output (length-prefixed frames), to
/// tell whether the stream so far ends with a whole `Detached` frame.
/// Only frames of `Detached`'s length are kept to compare.
#[derive(Default)]
struct Frames {
    head: Vec<u8>,
    left: usize,
    /// The frame under way has `Detached`'s length: its body is kept.
    capture: bool,
    body: Vec<u8>,
    last_detached: bool,
}

fn detached_body() -> Vec<u8> {
    encode(&Response::Detached).map(|f| f[4..].to_vec()).unwrap_or_default()
}

impl Frames {
    /// Take the next bytes; true when they end right after a `Detached` frame.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let want = detached_body();
        while !bytes.is_empty() {
            if self.left == 0 {
                self.last_detached = false;
                let take = (4 - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.head.len() == 4 {
                    let len = u32::from_le_bytes([self.head[0], self.head[1], self.head[2], self.head[3]]);
                    self.head.clear();
                    self.left = len as usize;
                    self.body.clear();
                    self.capture = self.left == want.len();
                    if self.left == 0 {
                        self.last_detached = want.is_empty();
                    }
                }
                continue;
            }
            let take = self.left.min(bytes.len());
            if self.capture {
                self.body.extend_from_slice(&bytes[..take]);
            }
            self.left -= take;
            bytes = &bytes[take..];
            if self.left == 0 {
                self.last_detached = self.capture && self.body == want;
            }
        }
        self.last_detached && self.head.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's stream that ends with `Detach` is told from one that
    /// does not, however its bytes were split into reads.
    #[tokio::test]
    async fn a_client_stream_ending_with_detach_is_seen_whatever_the_reads() {
        let bye = encode(&Request::Bye).unwrap();
        let det = detach_request();
        for (stream, ends) in [([bye.clone(), det.clone()].concat(), true), ([det.clone(), bye].concat(), false)] {
            for chunk in [1, 3, 64] {
                let mut t = Tail::new(&stream[..], detach_request());
                let mut buf = vec![0u8; chunk];
                while t.read(&mut buf).await.unwrap() > 0 {}
                assert_eq!(t.ends_with_want(), ends, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn only_a_stream_ending_with_a_whole_detached_frame_counts() {
        let bye = encode(&Response::Bye).unwrap();
        let det = encode(&Response::Detached).unwrap();
        let pong = encode(&Response::Pong).unwrap();
        let mut f = Frames::default();
        assert!(!f.feed(&bye));
        assert!(f.feed(&det));
        assert!(!f.feed(&pong[..1]), "a next frame begun");
        assert!(!f.feed(&pong[1..]));
        // Split anywhere, byte by byte.
        let mut all = bye.clone();
        all.extend_from_slice(&det);
        let mut f = Frames::default();
        let ends: Vec<bool> = all.iter().map(|b| f.feed(&[*b])).collect();
        assert_eq!(ends.iter().filter(|e| **e).count(), 1);
        assert!(ends[ends.len() - 1]);
        // A frame whose body merely contains Detached's bytes does not.
        let mut f = Frames::default();
        let err = encode(&Response::Error { message: String::from_utf8_lossy(&det).into_owned() }).unwrap();
        assert!(!f.feed(&err));
    }
}
