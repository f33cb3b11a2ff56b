//! A remote command's stdio.
//!
//! A pump task owns the channel's read half: stdout data goes into an
//! in-memory pipe (bounded, so a slow reader slows the remote side through
//! SSH flow control), stderr is kept (the last 64 KiB), and the exit status is
//! delivered once all output has been passed on.

use std::sync::Arc;

use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::SshError;

const STDERR_CAP: usize = 64 * 1024;
const PIPE: usize = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct ExitInfo {
    pub code: Option<u32>,
    pub signal: Option<String>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub struct RemoteProcess {
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub exit: ExitWaiter,
}

impl RemoteProcess {
    /// Split into stdin (shutdown sends EOF), stdout, and the exit waiter, so
    /// they can live in different tasks.
    pub fn into_parts(self) -> (Box<dyn AsyncWrite + Send + Unpin>, Box<dyn AsyncRead + Send + Unpin>, ExitWaiter) {
        (self.stdin, self.stdout, self.exit)
    }
}

pub struct ExitWaiter {
    rx: oneshot::Receiver<Result<ExitInfo, SshError>>,
    addr: Arc<str>,
}

impl ExitWaiter {
    /// Has the channel closed (the process ended, or the connection)? A
    /// process kept between uses (the resident's agents) is checked before
    /// each one.
    pub fn ended(&mut self) -> bool {
        !matches!(self.rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    /// The exit status and stderr, once the channel has closed.
    pub async fn wait(self) -> Result<ExitInfo, SshError> {
        match self.rx.await {
            Ok(r) => r,
            Err(_) => Err(SshError::Disconnected { addr: self.addr.to_string(), reason: "channel dropped".into() }),
        }
    }
}

pub(crate) fn start(channel: russh::Channel<russh::client::Msg>, addr: Arc<str>) -> RemoteProcess {
    let (mut read, write) = channel.split();
    let stdin = Box::new(write.make_writer());
    let (pipe_w, pipe_r) = tokio::io::duplex(PIPE);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut out = Some(pipe_w);
        let mut info = ExitInfo::default();
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(w) = out.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            out = None; // reader gone: keep draining
                        }
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    info.stderr.extend_from_slice(&data);
                    if info.stderr.len() > STDERR_CAP {
                        let cut = info.stderr.len() - STDERR_CAP;
                        info.stderr.drain(..cut);
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => info.code = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => info.signal = Some(format!("{signal_name:?}")),
                ChannelMsg::Eof => {
                    if let Some(mut w) = out.take() {
                        let _ = w.shutdown().await;
                    }
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        drop(out);
        let _ = tx.send(Ok(info));
    });
    RemoteProcess { stdin, stdout: Box::new(pipe_r), exit: ExitWaiter { rx, addr } }
}
