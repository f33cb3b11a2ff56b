//! The protocol loop: read requests on stdin, answer on stdout.
//!
//! Blob chunks are not answered one by one (the controller pipelines them);
//! a bad chunk is remembered and reported when `Apply` comes, before anything
//! on the host is touched.

use std::io::{BufReader, BufWriter, Read, Write};
use std::time::Duration;

use drover_proto::frame::skip_to_magic;
use drover_proto::{read_frame, write_frame, FrameError, Request, Response, PROTOCOL_VERSION};

use crate::diff::Candidate;
use crate::engine::Engine;
use crate::facts;
use crate::layout::Layout;
use crate::{AgentError, Result};

/// How long a second session waits for the host lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

pub fn serve(layout: Layout, input: impl Read, output: impl Write) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut w = BufWriter::new(output);
    let io = |e: FrameError| AgentError(format!("protocol: {e}"));
    skip_to_magic(&mut r, 64 * 1024).map_err(io)?;
    match read_frame::<Request, _>(&mut r).map_err(io)? {
        Request::Hello { protocol, .. } if protocol == PROTOCOL_VERSION => {}
        Request::Hello { protocol, .. } => {
            let message = format!("controller speaks protocol {protocol}, this agent {PROTOCOL_VERSION}");
            write_frame(&mut w, &Response::Error { message: message.clone() }).map_err(io)?;
            return Err(AgentError(message));
        }
        other => return Err(AgentError(format!("expected Hello, got {other:?}"))),
    }
    let mut engine = match Engine::open(layout.clone(), LOCK_WAIT) {
        Ok(e) => e,
        Err(e) => {
            write_frame(&mut w, &Response::Error { message: e.0.clone() }).map_err(io)?;
            return Err(e);
        }
    };
    let hello = Response::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        facts: facts::gather(&layout),
        state: engine.host_state(),
    };
    write_frame(&mut w, &hello).map_err(io)?;

    let mut cand: Option<Candidate> = None;
    let mut chunk_error: Option<AgentError> = None;
    loop {
        let req = match read_frame::<Request, _>(&mut r) {
            Ok(req) => req,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let reply = match req {
            Request::Hello { .. } => Response::Error { message: "duplicate Hello".into() },
            Request::Check { manifest } => match engine.check(&manifest) {
                Ok((up_to_date, drift)) => Response::Check { up_to_date, drift },
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Diff { manifest, generation } => match engine.diff(manifest, generation) {
                Ok(c) => {
                    let reply = Response::Diff {
                        changes: c.changes.clone(),
                        restarts: c.restarts.clone(),
                        missing: engine.missing(&c),
                    };
                    cand = Some(c);
                    chunk_error = None;
                    reply
                }
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Chunk(chunk) => {
                if chunk_error.is_none() {
                    let res = match &cand {
                        Some(c) => engine.receive(&chunk, c),
                        None => Err(AgentError("blob chunk before Diff".into())),
                    };
                    chunk_error = res.err();
                }
                continue;
            }
            Request::Apply { confirm_timeout_ms, stop_first } => match (chunk_error.take(), cand.take()) {
                (Some(e), _) => Response::Error { message: e.0 },
                (None, None) => Response::Error { message: "Apply before Diff".into() },
                (None, Some(c)) => {
                    let mut progress = |m: String| {
                        let _ = write_frame(&mut w, &Response::Progress(m));
                    };
                    match engine.apply(c, confirm_timeout_ms, stop_first, &mut progress) {
                        Ok(o) => Response::Applied(o),
                        Err(e) => Response::Error { message: e.0 },
                    }
                }
            },
            Request::Rollback { to, confirm_timeout_ms } => {
                let mut progress = |m: String| {
                    let _ = write_frame(&mut w, &Response::Progress(m));
                };
                match engine.rollback(to, confirm_timeout_ms, &mut progress) {
                    Ok(o) => Response::Applied(o),
                    Err(e) => Response::Error { message: e.0 },
                }
            }
            Request::Confirm { generation } => match engine.confirm(generation) {
                Ok(()) => Response::Confirmed { generation },
                Err(e) => Response::Error { message: e.0 },
            },
            Request::CurrentManifest => match engine.current_manifest() {
                Ok(m) => Response::CurrentManifest(m),
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Status => match engine.status() {
                Ok(s) => Response::Status(s),
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Exec { command, timeout_ms } => {
                match crate::ops::exec(&command, Duration::from_millis(timeout_ms)) {
                    Ok((code, stdout, stderr, timed_out)) => Response::ExecResult { code, stdout, stderr, timed_out },
                    Err(e) => Response::Error { message: e.0 },
                }
            }
            Request::Drain { reason } => match engine.drain(Some(&reason)) {
                Ok(services) => Response::Drained { drained: true, services },
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Undrain => match engine.drain(None) {
                Ok(services) => Response::Drained { drained: false, services },
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Logs { service, lines, since_ms, follow } => {
                let path = layout.target(&crate::ops::log_file(&service).to_string_lossy());
                match crate::ops::read_log(&path, lines, since_ms) {
                    Err(e) => Response::Error { message: e.0 },
                    Ok((batch, mut offset)) => {
                        write_frame(&mut w, &Response::LogLines(batch)).map_err(io)?;
                        if !follow {
                            Response::LogEnd
                        } else {
                            // Until the controller goes away (the write fails).
                            loop {
                                std::thread::sleep(Duration::from_millis(250));
                                let more = crate::ops::read_more(&path, &mut offset).unwrap_or_default();
                                if !more.is_empty() {
                                    write_frame(&mut w, &Response::LogLines(more)).map_err(io)?;
                                }
                            }
                        }
                    }
                }
            }
            Request::Bye => {
                write_frame(&mut w, &Response::Bye).map_err(io)?;
                return Ok(());
            }
        };
        write_frame(&mut w, &reply).map_err(io)?;
    }
}
