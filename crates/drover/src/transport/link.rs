//! The controller's end of the agent protocol over any byte stream (an SSH
//! channel, or a local agent process's pipes).
//!
//! Every receive has a deadline; progress messages from the agent push it
//! back, so a long health check is fine but a silent peer is not.

use std::time::Duration;

use drover_proto::frame::{chunk_head, decode, encode};
use drover_proto::{FrameError, Hash, Request, Response, MAGIC, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("agent did not answer within {0:?} (link down or host frozen?)")]
    Timeout(Duration),
    #[error("connection to the agent closed{0} (the agent ended: killed, crashed, or its link was cut)")]
    Closed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("agent: {0}")]
    Agent(String),
    #[error("agent: {0}")]
    Busy(String),
    /// The host's storage refused a write, or the agent's free-space check
    /// before a transition found too little: the filesystem, its free
    /// space, what was needed, where the host is.
    #[error("agent: {0}")]
    Storage(Box<drover_proto::StorageFailure>),
}

impl LinkError {
    /// Worth retrying on a new connection?
    pub fn is_transient(&self) -> bool {
        matches!(self, LinkError::Timeout(_) | LinkError::Closed(_) | LinkError::Busy(_))
    }
}

/// Per link: the write buffer gathers small frames into fewer writes; the
/// read buffer is zero-filled when the link starts, so it stays small.
const WRITE_BUFFER: usize = 64 * 1024;
const READ_BUFFER: usize = 16 * 1024;

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

pub struct AgentLink {
    w: BufWriter<Writer>,
    r: BufReader<Reader>,
    timeout: Duration,
    /// Bytes written to the agent, preamble and framing included.
    pub bytes_sent: u64,
}

impl AgentLink {
    /// Start a session: an optional sudo password line, then the sync magic.
    pub async fn start(
        w: Writer,
        r: Reader,
        sudo_password: Option<&str>,
        timeout: Duration,
    ) -> Result<AgentLink, LinkError> {
        // Small buffers: a write or read larger than the buffer bypasses it
        // (1 MiB chunks go straight through), and each of up to `parallel`
        // (512) links at once holds both: at 1 MiB + 64 KiB each, a check
        // pass over 10,000 hosts had 544 MiB of them allocated.
        let mut link = AgentLink {
            w: BufWriter::with_capacity(WRITE_BUFFER, w),
            r: BufReader::with_capacity(READ_BUFFER, r),
            timeout,
            bytes_sent: 0,
        };
        let mut pre = Vec::new();
        if let Some(p) = sudo_password {
            pre.extend_from_slice(p.as_bytes());
            pre.push(b'\n');
        }
        pre.extend_from_slice(MAGIC);
        link.write(&pre).await?;
        Ok(link)
    }

    /// A write that makes no progress for the op timeout means the link is
    /// stalled (cut cable, frozen peer: the TCP and SSH windows are full).
    /// Pipelined chunks are written without waiting for any reply, so the
    /// timeout must be on the writes too, not only on reads. It bounds
    /// silence, not the whole write: a 1 MiB chunk over a link throttled to
    /// kilobytes per second is slow, not dead.
    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), LinkError> {
        let t = self.timeout;
        let total = bytes.len() as u64;
        while !bytes.is_empty() {
            let n = tokio::time::timeout(t, self.w.write(bytes))
                .await
                .map_err(|_| LinkError::Timeout(t))?
                .map_err(|e| LinkError::Closed(format!(": {e}")))?;
            if n == 0 {
                return Err(LinkError::Closed(": the agent's input closed".into()));
            }
            bytes = &bytes[n..];
        }
        self.bytes_sent += total;
        Ok(())
    }

    /// Queue a request without waiting for the peer (pipelining).
    pub async fn send(&mut self, req: &Request) -> Result<(), LinkError> {
        let frame = encode(req).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.write(&frame).await
    }

    /// Queue a blob chunk (pipelined), written from `data` where it lies:
    /// the same bytes go to every host, without a framed copy per host.
    pub async fn send_chunk(&mut self, hash: Hash, offset: u64, data: &[u8]) -> Result<(), LinkError> {
        let head = chunk_head(hash, offset, data.len()).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.write(&head).await?;
        self.write(data).await
    }

    pub async fn flush(&mut self) -> Result<(), LinkError> {
        tokio::time::timeout(self.timeout, self.w.flush())
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))?
            .map_err(|e| LinkError::Closed(format!(": {e}")))
    }

    /// Next response, with the deadline.
    pub async fn recv(&mut self) -> Result<Response, LinkError> {
        let t = self.timeout;
        tokio::time::timeout(t, self.read_frame()).await.map_err(|_| LinkError::Timeout(t))?
    }

    async fn read_frame(&mut self) -> Result<Response, LinkError> {
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len).await.map_err(|e| LinkError::Closed(format!(": {e}")))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(LinkError::Protocol(FrameError::TooLarge(len).to_string()));
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await.map_err(|e| LinkError::Closed(format!(": {e}")))?;
        decode(&body).map_err(|e| LinkError::Protocol(e.to_string()))
    }

    /// Send, flush and wait for the answer; progress messages go to
    /// `progress` and reset the deadline. An agent `Error` becomes `Err`.
    pub async fn call(
        &mut self,
        req: &Request,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Response, LinkError> {
        self.send(req).await?;
        self.flush().await?;
        self.answer(progress).await
    }

    /// [`AgentLink::call`] whose first frame (the answer, or progress) is
    /// due within `first` rather than the link's timeout: an agent kept by
    /// the resident on a host that froze must cost a connect timeout, not
    /// an op timeout; one that says it waits (for the host lock) is waited for.
    pub async fn call_first_within(
        &mut self,
        req: &Request,
        first: Duration,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Response, LinkError> {
        let op = self.timeout;
        self.timeout = first.min(op);
        let head = async {
            self.send(req).await?;
            self.flush().await?;
            self.recv().await
        }
        .await;
        self.timeout = op;
        match head? {
            Response::Progress(m) => {
                progress(&m);
                self.answer(progress).await
            }
            Response::Error { message } => Err(LinkError::Agent(message)),
            Response::Busy { message } => Err(LinkError::Busy(message)),
            Response::StorageFailed(f) => Err(LinkError::Storage(Box::new(f))),
            other => Ok(other),
        }
    }

    /// The answer to a request sent: progress to `progress`, an agent
    /// `Error` as `Err`.
    async fn answer(&mut self, progress: &mut (dyn FnMut(&str) + Send)) -> Result<Response, LinkError> {
        loop {
            match self.recv().await? {
                Response::Progress(m) => progress(&m),
                Response::Error { message } => return Err(LinkError::Agent(message)),
                Response::Busy { message } => return Err(LinkError::Busy(message)),
                Response::StorageFailed(f) => return Err(LinkError::Storage(Box::new(f))),
                other => return Ok(other),
            }
        }
    }

    /// Send and flush without waiting for an answer (streams read with `recv`).
    pub async fn call_no_wait(&mut self, req: &Request) -> Result<(), LinkError> {
        self.send(req).await?;
        self.flush().await
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// End the session but leave the agent running for the next one (the
    /// resident keeps it, see `resident`): `Detach`, and leave. The
    /// resident waits for the agent's `Detached` (after which it holds
    /// nothing) and keeps it; the command need not wait a round trip to the
    /// host for it. Anything else, and the resident treats the stream as
    /// dropped (it ends the agent).
    pub async fn detach(mut self) {
        let _ = self.send(&Request::Detach).await;
        let _ = self.flush().await;
    }

    /// Say goodbye; errors are irrelevant at this point.
    pub async fn close(mut self) {
        let _ = self.send(&Request::Bye).await;
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.recv()).await;
    }
}
