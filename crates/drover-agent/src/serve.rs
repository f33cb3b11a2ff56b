//! The protocol loop: read requests on stdin, answer on stdout.
//!
//! Blob chunks are not answered one by one (the controller pipelines them);
//! a bad chunk is remembered and reported when `Apply` comes, before anything
//! on the host is touched.

use std::cell::Cell;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use drover_proto::frame::skip_to_magic;
use drover_proto::{read_frame, write_frame, FrameError, Request, Response, PROTOCOL_VERSION};

use crate::diff::Candidate;
use crate::engine::Engine;
use crate::facts;
use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::{AgentError, Result};

/// How long a second session waits for the host lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// How often a following log session proves the controller is still there.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Input that, once armed, gives up after a set silence.
///
/// `input` must be unbuffered (a raw fd, not `StdinLock`): readiness is
/// asked of the fd, so bytes already sitting in a buffer below us would be
/// invisible and look like silence.
struct Idle<R> {
    inner: R,
    limit: Cell<Option<Duration>>,
}

impl<R: Read + AsFd> Read for Idle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(limit) = self.limit.get() {
            let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
            let mut pfd = libc::pollfd { fd: self.inner.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
            loop {
                // SAFETY: one valid pollfd that lives across the call.
                match unsafe { libc::poll(&mut pfd, 1, ms) } {
                    0 => {
                        let why = format!("no word from the controller for {limit:?} while holding the host lock");
                        return Err(io::Error::new(io::ErrorKind::TimedOut, why));
                    }
                    n if n > 0 => break,
                    _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
                    _ => return Err(io::Error::last_os_error()),
                }
            }
        }
        self.inner.read(buf)
    }
}

/// Diff `manifest` with the host: it becomes the session's candidate for
/// `Apply` (from `Diff`, or from a bundle's host statement with
/// `BundleDiff`, whose sealed secrets are asked for as ciphertext).
fn candidate(
    engine: &Engine,
    manifest: Result<drover_proto::Manifest>,
    generation: u64,
    sealed: &[crate::sealed::Opened],
    cand: &mut Option<Candidate>,
    chunk_error: &mut Option<AgentError>,
) -> Response {
    match manifest.and_then(|m| engine.diff(m, generation)) {
        Ok(mut c) => {
            let missing = engine.missing(&c);
            let missing = crate::sealed::redirect_missing(&engine.layout, sealed, &mut c, missing, engine.holds_lock());
            let reply = Response::Diff {
                changes: c.changes.clone(),
                restarts: c.restarts.clone(),
                missing,
                setup: crate::setup::drift(&engine.layout, &engine.accounts, &c.manifest.setup),
            };
            *cand = Some(c);
            *chunk_error = None;
            reply
        }
        Err(e) => Response::Error { message: e.0 },
    }
}

/// The reply to a request that could not get the host lock.
fn lock_error(e: &AgentError) -> Response {
    let message = e.0.clone();
    if message == crate::engine::LOCK_BUSY {
        Response::Busy { message }
    } else {
        Response::Error { message }
    }
}

/// What a read-only session (`drover plan`) may ask: requests that only read.
/// `Diff` and `BundleDiff` read too (the candidate they leave can never be
/// applied here).
fn allowed_read_only(req: &Request) -> bool {
    matches!(
        req,
        Request::Check { .. }
            | Request::Diff { .. }
            | Request::BundleDiff { .. }
            | Request::CurrentManifest
            | Request::Status
            | Request::Logs { .. }
            | Request::ReadPaths { .. }
            | Request::Bye
            | Request::Ping
    )
}

fn read_only_refusal(req: &Request) -> String {
    let name = format!("{req:?}");
    let name = name.split([' ', '(', '{']).next().unwrap_or("request");
    format!("{name} refused: this session was opened read-only (plan); open a normal session to change the host")
}

/// Serve one controller session. `env` says how this host reboots (see
/// [`HostEnv`]); it is chosen by whoever starts the agent.
pub fn serve(layout: Layout, env: HostEnv, input: impl Read + AsFd, output: impl Write) -> Result<()> {
    // 64 KiB: larger reads (blob chunks) bypass the buffer anyway, and std
    // zeroes a BufReader's whole buffer on its first read, so a 1 MiB one
    // cost every session (a no-op too) 256 page faults and a 1 MiB memset.
    let mut r = BufReader::with_capacity(64 << 10, Idle { inner: input, limit: Cell::new(None) });
    let mut w = BufWriter::new(output);
    let io = |e: FrameError| AgentError(format!("protocol: {e}"));
    skip_to_magic(&mut r, 64 * 1024).map_err(io)?;
    let (idle, read_only) = match read_frame::<Request, _>(&mut r).map_err(io)? {
        Request::Hello { protocol, idle_ms, read_only, .. } if protocol == PROTOCOL_VERSION => {
            // Never below a second: a controller's bookkeeping between two
            // requests is not silence.
            ((idle_ms > 0).then(|| Duration::from_millis(idle_ms.max(1000))), read_only)
        }
        Request::Hello { protocol, .. } => {
            let message = format!("controller speaks protocol {protocol}, this agent {PROTOCOL_VERSION}");
            write_frame(&mut w, &Response::Error { message: message.clone() }).map_err(io)?;
            return Err(AgentError(message));
        }
        other => return Err(AgentError(format!("expected Hello, got {other:?}"))),
    };
    // A read-only session (plan) takes no lock and runs no recovery: it
    // reports the host exactly as it finds it, and writes nothing.
    let opened = if read_only {
        Engine::open_read_only(layout.clone(), env)
    } else {
        Engine::open(layout.clone(), LOCK_WAIT, env)
    };
    let mut engine = match opened {
        Ok(e) => e,
        Err(e) => {
            write_frame(&mut w, &lock_error(&e)).map_err(io)?;
            return Err(e);
        }
    };
    let hello = Response::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        facts: facts::gather(&layout, env),
        state: {
            let mut state = engine.host_state();
            crate::engine::watchdog::add_report(&layout, &mut state);
            state
        },
    };
    write_frame(&mut w, &hello).map_err(io)?;
    // Recovery is done; read-only requests need no lock. Requests that change
    // the host take it again (and keep it for the rest of the session).
    engine.release();

    let mut cand: Option<Candidate> = None;
    // The candidate's host (from a bundle) and its sealed secrets.
    let mut sealed: (String, Vec<crate::sealed::Opened>) = Default::default();
    let mut chunk_error: Option<AgentError> = None;
    loop {
        let req = match read_frame::<Request, _>(&mut r) {
            Ok(req) => req,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let changes_host = matches!(
            req,
            Request::Diff { .. }
                | Request::Chunk(_)
                | Request::Apply { .. }
                | Request::Rollback { .. }
                | Request::Confirm { .. }
                | Request::Drain { .. }
                | Request::Undrain
                | Request::BundleDiff { .. }
                | Request::RelayFetch { .. }
                | Request::Reboot { .. }
        );
        if read_only && !allowed_read_only(&req) {
            if !matches!(req, Request::Chunk(_)) {
                write_frame(&mut w, &Response::Error { message: read_only_refusal(&req) }).map_err(io)?;
            }
            continue;
        }
        // `Diff` in a read-only session compares without the lock: it reads.
        if changes_host && !read_only {
            if let Err(e) = engine.ensure_locked(LOCK_WAIT) {
                if matches!(req, Request::Chunk(_)) {
                    chunk_error.get_or_insert(e);
                } else {
                    write_frame(&mut w, &lock_error(&e)).map_err(io)?;
                }
                continue;
            }
            // From here on the session holds the lock: a controller gone
            // silent (cut link, frozen) must not keep it.
            r.get_ref().limit.set(idle);
        }
        let reply = match req {
            Request::Hello { .. } => Response::Error { message: "duplicate Hello".into() },
            Request::Check { manifest } => match engine.check(&manifest) {
                Ok((up_to_date, drift)) => Response::Check { up_to_date, drift },
                Err(e) => Response::Error { message: e.0 },
            },
            Request::Diff { manifest, generation } => {
                let manifest = crate::install::require_signed(&layout, "a plain apply").map(|()| manifest);
                sealed = Default::default();
                candidate(&engine, manifest, generation, &[], &mut cand, &mut chunk_error)
            }
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
                    let opened = crate::sealed::open_received(&layout, &sealed.0, &sealed.1);
                    match opened.and_then(|()| engine.apply(c, confirm_timeout_ms, stop_first, &mut progress)) {
                        Ok(o) => {
                            crate::engine::watchdog::clear_report(&layout);
                            Response::Applied(o)
                        }
                        Err(e) => Response::Error { message: e.0 },
                    }
                }
            },
            Request::Rollback { to, confirm_timeout_ms } => {
                let mut progress = |m: String| {
                    let _ = write_frame(&mut w, &Response::Progress(m));
                };
                let done = crate::install::require_signed(&layout, "a rollback")
                    .and_then(|()| engine.rollback(to, confirm_timeout_ms, &mut progress));
                match done {
                    Ok(o) => {
                        crate::engine::watchdog::clear_report(&layout);
                        Response::Applied(o)
                    }
                    Err(e) => Response::Error { message: e.0 },
                }
            }
            Request::Reboot { confirm_timeout_ms, boot_timeout_ms, agent_sha256 } => {
                match crate::boot::prepare(&layout, env, confirm_timeout_ms, boot_timeout_ms, &agent_sha256) {
                    Ok(boots) => {
                        write_frame(&mut w, &Response::Rebooting { boots }).map_err(io)?;
                        w.flush().map_err(|e| AgentError(format!("protocol: {e}")))?;
                        // The lock goes with this process; the reply is out.
                        engine.release();
                        std::thread::sleep(Duration::from_millis(200));
                        return env.reboot();
                    }
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
                let current = engine.current_manifest().ok().flatten();
                let reader = crate::logs::LogReader::open(&layout, env, current.as_ref(), &service);
                match reader.and_then(|mut r| Ok((r.initial(lines, since_ms)?, r))) {
                    Err(e) => Response::Error { message: e.0 },
                    Ok((batch, mut reader)) => {
                        write_frame(&mut w, &Response::LogLines(batch)).map_err(io)?;
                        if !follow {
                            Response::LogEnd
                        } else {
                            // Until the controller goes away. A quiet log
                            // still gets an empty batch every few seconds: a
                            // write is the only way to notice the controller
                            // is gone, and a session must not outlive it.
                            let mut last = std::time::Instant::now();
                            loop {
                                std::thread::sleep(Duration::from_millis(250));
                                let more = reader.more().unwrap_or_default();
                                if !more.is_empty() || last.elapsed() > HEARTBEAT {
                                    write_frame(&mut w, &Response::LogLines(more)).map_err(io)?;
                                    last = std::time::Instant::now();
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
            Request::Ping => Response::Pong,
            Request::ReadPaths { paths, max_bytes } => {
                match crate::inspect::read_paths(&layout, &engine.accounts, &paths, max_bytes) {
                    Ok(p) => Response::Paths(p),
                    Err(e) => Response::Error { message: e.0 },
                }
            }
            Request::BundleDiff { statement, signature, generation } => {
                let entry = crate::install::bundle_entry(&layout, &statement, &signature)
                    .and_then(|e| crate::sealed::open_entry(&layout, e));
                let (name, secrets, manifest) = match entry {
                    Ok((e, opened, _)) => (e.name, opened, Ok(e.manifest)),
                    Err(e) => (String::new(), vec![], Err(e)),
                };
                let manifest = manifest
                    .and_then(|m| Ok(crate::install::keep_unchanged_sources(m, engine.current_manifest()?.as_ref())));
                sealed = (name, secrets);
                candidate(&engine, manifest, generation, &sealed.1, &mut cand, &mut chunk_error)
            }
            Request::RelayServe { bind, port, secret, blobs, idle_ms, max_conns } => {
                let r = crate::relay::ServeRequest {
                    bind: &bind,
                    port,
                    secret: &secret,
                    blobs: &blobs,
                    idle_ms,
                    max_conns,
                };
                match crate::relay::serve(&layout, &r) {
                    Ok(holding) => Response::RelayServing { holding },
                    Err(e) => Response::Error { message: e.0 },
                }
            }
            Request::RelayFetch { peer, secret, blobs } => {
                let mut progress = |m: String| {
                    let _ = write_frame(&mut w, &Response::Progress(m));
                };
                match crate::relay::fetch(&layout, &peer, &secret, &blobs, &mut progress) {
                    Ok((blobs, bytes)) => Response::RelayFetched { blobs, bytes },
                    Err(e) => Response::Error { message: e.0 },
                }
            }
        };
        write_frame(&mut w, &reply).map_err(io)?;
    }
}
