//! One controller session with the agent: the [`Session`] type, one method
//! per request, and what a session may be asked.
//!
//! A session opens with `Hello` ([`Session::hello`]): the engine is opened
//! (locked and recovered, or read-only for `drover plan`), and the host's
//! state goes back in the reply. After that the lock is released: requests
//! that only read need none, and the first request that changes the host
//! takes it again for the rest of the session ([`Request::changes_host`]). A
//! read-only session refuses every request that is not
//! [`Request::is_read_only`].
//!
//! - this file: opening, admitting and dispatching requests;
//! - `generation.rs`: diff, blob chunks, apply, rollback, confirm, reboot;
//! - `day2.rs`: check, status, logs, exec, drain, paths, relay.
//!
//! Blob chunks are not answered one by one (the controller pipelines them);
//! a bad chunk is remembered and reported when `Apply` comes, before anything
//! on the host is touched.
//!
//! Above the engine and everything it drives; below only [`crate::serve`]
//! (the byte stream) and the command line. It knows frames, not bytes.

use std::io::Write;
use std::time::Duration;

use drover_proto::{write_frame, Request, Response, PROTOCOL_VERSION};

use crate::diff::Candidate;
use crate::engine::{self, watchdog, Engine};
use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::sealed::Opened;
use crate::{facts, AgentError, Result};

mod day2;
mod generation;

/// How long a second session waits for the host lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What the session does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next request.
    Continue,
    /// The session is over (`Bye`, or the host is rebooting).
    End,
    /// The session is over but the agent stays (`Detach`): the caller ends
    /// the session with [`Session::detach`] and waits for a new `Hello`.
    Detach,
}

/// The candidate's host from a bundle (`BundleDiff`), and its sealed
/// secrets, opened when `Apply` comes. Empty after a plain `Diff`.
#[derive(Default)]
struct FromBundle {
    host: String,
    sealed: Vec<Opened>,
}

/// One controller session: the engine, what the session has been told so
/// far (the candidate of its last diff, a chunk that went wrong), and where
/// replies go.
pub struct Session<W: Write> {
    layout: Layout,
    env: HostEnv,
    engine: Engine,
    read_only: bool,
    /// The controller's longest silence, enforced once the session holds
    /// the lock (see [`Session::idle_limit`]).
    idle: Option<Duration>,
    /// What `Apply` activates: the last `Diff` or `BundleDiff`.
    cand: Option<Candidate>,
    bundle: FromBundle,
    /// The first chunk that could not be stored, reported at `Apply`.
    chunk_error: Option<AgentError>,
    /// Deltas that failed since the last `Diff`, and why: reported at
    /// `Missing`; the blobs are then sent whole (a failed delta is not a
    /// failed apply).
    delta_failed: Vec<(drover_proto::Hash, String)>,
    out: W,
}

/// A frame that could not be read or written ends the session.
pub fn protocol(e: impl std::fmt::Display) -> AgentError {
    AgentError::new(format!("protocol: {e}"))
}

impl<W: Write> Session<W> {
    /// Answer the controller's first request, which must be `Hello`: open
    /// the engine (see the module docs) and reply with the host's facts and
    /// state. `env` says how this host reboots (see [`HostEnv`]); it is
    /// chosen by whoever starts the agent.
    pub fn hello(layout: Layout, env: HostEnv, first: Request, mut out: W) -> Result<Session<W>> {
        let (idle, read_only) = match first {
            Request::Hello { protocol, idle_ms, read_only, .. } if protocol == PROTOCOL_VERSION => {
                // Never below a second: a controller's bookkeeping between two
                // requests is not silence.
                ((idle_ms > 0).then(|| Duration::from_millis(idle_ms.max(1000))), read_only)
            }
            Request::Hello { protocol: theirs, .. } => {
                let message = format!("controller speaks protocol {theirs}, this agent {PROTOCOL_VERSION}");
                write_frame(&mut out, &Response::Error { message: message.clone() }).map_err(protocol)?;
                return Err(AgentError::new(message));
            }
            other => return Err(AgentError::new(format!("expected Hello, got {other:?}"))),
        };
        // A read-only session (plan) takes no lock and runs no recovery: it
        // reports the host exactly as it finds it, and writes nothing.
        let opened = if read_only {
            Engine::open_read_only(layout.clone(), env)
        } else {
            // Waiting for another session's lock is said at once (a
            // progress frame), so a controller can bound a silent agent by
            // its connect timeout and still wait for a busy host.
            Engine::open(layout.clone(), Duration::ZERO, env)
                .or_else(|e| {
                    if e.0 != engine::LOCK_BUSY {
                        return Err(e);
                    }
                    let wait = Response::Progress("waiting for the host lock (another session holds it)".into());
                    write_frame(&mut out, &wait).map_err(protocol)?;
                    Engine::open(layout.clone(), LOCK_WAIT, env)
                })
                .or_else(|e| unrecovered(&layout, env, e))
        };
        let mut engine = match opened {
            Ok(e) => e,
            Err(e) => {
                write_frame(&mut out, &lock_error(&e)).map_err(protocol)?;
                return Err(e);
            }
        };
        let hello = Response::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            facts: facts::gather(&layout, env),
            state: {
                let mut state = engine.host_state();
                watchdog::add_report(&layout, &mut state);
                state
            },
        };
        write_frame(&mut out, &hello).map_err(protocol)?;
        // Recovery is done; read-only requests need no lock. Requests that
        // change the host take it again (and keep it for the rest of the
        // session).
        engine.release();
        let (cand, bundle, chunk_error, delta_failed) = (None, FromBundle::default(), None, vec![]);
        Ok(Session { layout, env, engine, read_only, idle, cand, bundle, chunk_error, delta_failed, out })
    }

    /// How long the controller may stay silent now: once the session holds
    /// the lock, a controller gone silent (cut link, frozen) must not keep
    /// it. No limit before.
    pub fn idle_limit(&self) -> Option<Duration> {
        self.idle.filter(|_| self.engine.holds_lock())
    }

    /// Serve one request after `Hello`.
    pub fn serve(&mut self, req: Request) -> Result<Next> {
        if !self.admit(&req)? {
            return Ok(Next::Continue);
        }
        self.handle(req)
    }

    /// May `req` be served now? Refused in a read-only session unless it
    /// only reads; in a normal one, a request that changes the host first
    /// takes the host lock. A request that may not is answered here (a
    /// chunk is not: its error waits for `Apply`).
    fn admit(&mut self, req: &Request) -> Result<bool> {
        if matches!(req, Request::Confirm { .. }) {
            crate::hooks::point(&self.layout, "before-confirm");
        }
        if self.read_only && !req.is_read_only() {
            if !matches!(req, Request::Chunk(_) | Request::Delta(_)) {
                self.send(&Response::Error { message: read_only_refusal(req) })?;
            }
            return Ok(false);
        }
        // `Diff` in a read-only session compares without the lock: it reads.
        if req.changes_host() && !self.read_only {
            if let Err(e) = self.engine.ensure_locked(LOCK_WAIT) {
                if let Request::Delta(d) = req {
                    self.delta_failed.push((d.hash, e.0));
                } else if matches!(req, Request::Chunk(_)) {
                    self.chunk_error.get_or_insert(e);
                } else {
                    self.send(&lock_error(&e))?;
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn handle(&mut self, req: Request) -> Result<Next> {
        let reply = match req {
            Request::Hello { .. } => Response::Error { message: "duplicate Hello".into() },
            Request::Check { manifest } => self.check(&manifest),
            Request::Diff { manifest, generation } => self.diff(manifest, generation),
            Request::BundleDiff { statement, signature, generation } => {
                self.bundle_diff(&statement, &signature, generation)
            }
            Request::Chunk(chunk) => {
                self.chunk(&chunk);
                return Ok(Next::Continue);
            }
            Request::Delta(d) => {
                self.delta(&d);
                return Ok(Next::Continue);
            }
            Request::Missing { blobs } => self.missing(&blobs),
            Request::Apply { confirm_timeout_ms, stop_first } => self.apply(confirm_timeout_ms, stop_first),
            Request::Rollback { to, confirm_timeout_ms } => self.rollback(to, confirm_timeout_ms),
            Request::Confirm { generation } => self.confirm(generation),
            Request::Reboot { confirm_timeout_ms, boot_timeout_ms, agent_sha256 } => {
                return self.reboot(confirm_timeout_ms, boot_timeout_ms, &agent_sha256);
            }
            Request::CurrentManifest => self.current_manifest(),
            Request::Status => self.status(),
            Request::Exec { command, timeout_ms } => self.exec(&command, timeout_ms),
            Request::Drain { reason } => self.drain(Some(&reason)),
            Request::Undrain => self.drain(None),
            Request::Logs { service, lines, since_ms, follow } => self.logs(&service, lines, since_ms, follow)?,
            Request::ReadPaths { paths, max_bytes } => self.read_paths(&paths, max_bytes),
            Request::RelayServe { bind, port, secret, blobs, idle_ms, max_conns } => {
                let r = crate::relay::ServeRequest {
                    bind: &bind,
                    port,
                    secret: &secret,
                    blobs: &blobs,
                    idle_ms,
                    max_conns,
                };
                self.relay_serve(&r)
            }
            Request::RelayFetch { peer, secret, blobs } => self.relay_fetch(&peer, &secret, &blobs),
            Request::Ping => Response::Pong,
            Request::Bye => {
                self.send(&Response::Bye)?;
                return Ok(Next::End);
            }
            Request::Detach => return Ok(Next::Detach),
        };
        self.send(&reply)?;
        Ok(Next::Continue)
    }

    /// End the session after `Detach`: everything it held goes first (the
    /// host lock with the engine, the candidate, chunks, the idle limit),
    /// then `Detached` is answered, so a controller that reads it finds the
    /// host exactly as after a `Bye`. The stream is handed back for the
    /// next session.
    pub fn detach(self) -> Result<W> {
        let Session { mut out, engine, .. } = self;
        drop(engine);
        write_frame(&mut out, &Response::Detached).map_err(protocol)?;
        Ok(out)
    }

    fn send(&mut self, reply: &Response) -> Result<()> {
        write_frame(&mut self.out, reply).map_err(protocol)
    }
}

/// The reply to a request that failed: the error's text.
fn answer<T>(done: Result<T>, ok: impl FnOnce(T) -> Response) -> Response {
    match done {
        Ok(v) => ok(v),
        Err(e) => failure(e),
    }
}

/// A failure as the controller should see it: the filesystem's refusal as
/// data, anything else as its text.
fn failure(e: AgentError) -> Response {
    match e.1 {
        Some(storage) => Response::StorageFailed(*storage),
        None => Response::Error { message: e.0 },
    }
}

/// Recovery could not finish (the filesystem still refuses what undoing an
/// interrupted transition must write): the host can still be looked at
/// (`status`, logs), and each request that would change it runs recovery
/// again first, failing with the reason until it succeeds. Only a busy
/// lock still fails the session.
fn unrecovered(layout: &Layout, env: HostEnv, e: AgentError) -> Result<Engine> {
    if e.0 == engine::LOCK_BUSY {
        return Err(e);
    }
    let mut engine = Engine::open_read_only(layout.clone(), env)?;
    engine.recovered = Some(format!("recovery could not finish: {e}"));
    Ok(engine)
}

/// The reply to a request that could not get the host lock.
fn lock_error(e: &AgentError) -> Response {
    let message = e.0.clone();
    match e.storage() {
        _ if message == engine::LOCK_BUSY => Response::Busy { message },
        Some(storage) => Response::StorageFailed(storage.clone()),
        None => Response::Error { message },
    }
}

fn read_only_refusal(req: &Request) -> String {
    let name = format!("{req:?}");
    let name = name.split([' ', '(', '{']).next().unwrap_or("request");
    format!("{name} refused: this session was opened read-only (plan); open a normal session to change the host")
}
