//! The requests that move the host between generations: `Diff` (or
//! `BundleDiff`) leaves a candidate, `Chunk`s bring what it misses, `Apply`
//! activates it; `Rollback`, `Confirm`, and `Reboot` (confirmed after the
//! boot).

use std::io::Write;
use std::time::Duration;

use drover_proto::{write_frame, BlobChunk, BlobDelta, Hash, Manifest, Response};

use super::{answer, failure, protocol, FromBundle, Next, Session};
use crate::engine::watchdog;
use crate::{boot, install, sealed, setup, AgentError, Result};

impl<W: Write> Session<W> {
    pub(super) fn diff(&mut self, manifest: Manifest, generation: u64) -> Response {
        let manifest = install::require_signed(&self.layout, "a plain apply").map(|()| manifest);
        self.bundle = FromBundle::default();
        self.candidate(manifest, generation)
    }

    /// `Diff` for the host's entry in a signed bundle, whose sealed secrets
    /// are asked for as ciphertext.
    pub(super) fn bundle_diff(&mut self, statement: &[u8], signature: &str, generation: u64) -> Response {
        let entry =
            install::bundle_entry(&self.layout, statement, signature).and_then(|e| sealed::open_entry(&self.layout, e));
        let (host, opened, manifest) = match entry {
            Ok((e, opened, _)) => (e.name, opened, Ok(e.manifest)),
            Err(e) => (String::new(), vec![], Err(e)),
        };
        let manifest =
            manifest.and_then(|m| Ok(install::keep_unchanged_sources(m, self.engine.current_manifest()?.as_ref())));
        self.bundle = FromBundle { host, sealed: opened };
        self.candidate(manifest, generation)
    }

    /// Diff `manifest` with the host: it becomes the session's candidate for
    /// `Apply`.
    fn candidate(&mut self, manifest: Result<Manifest>, generation: u64) -> Response {
        let engine = &self.engine;
        match manifest.and_then(|m| engine.diff(m, generation)) {
            Ok(mut c) => {
                let missing = engine.missing(&c);
                let missing =
                    sealed::redirect_missing(&engine.layout, &self.bundle.sealed, &mut c, missing, engine.holds_lock());
                // Nothing is shipped to a host that cannot hold it (a
                // read-only session, `plan`, ships nothing).
                if engine.holds_lock() {
                    if let Err(e) = engine.room_for(&missing, &c) {
                        return failure(e);
                    }
                }
                let reply = Response::Diff {
                    changes: c.changes.clone(),
                    restarts: c.restarts.clone(),
                    bases: engine.bases(&c, &missing),
                    missing,
                    setup: setup::drift(&engine.layout, &engine.accounts, &c.manifest.setup),
                };
                self.cand = Some(c);
                self.chunk_error = None;
                self.delta_failed.clear();
                reply
            }
            Err(e) => failure(e),
        }
    }

    /// Store part of a blob; the first error is kept for `Apply`.
    pub(super) fn chunk(&mut self, chunk: &BlobChunk) {
        if self.chunk_error.is_none() {
            let res = match &self.cand {
                Some(c) => self.engine.receive(chunk, c),
                None => Err(AgentError::new("blob chunk before Diff".into())),
            };
            self.chunk_error = res.err();
        }
    }

    /// Take part of a blob's delta; a failure is kept for `Missing` (the
    /// blob is then sent whole), never for `Apply`.
    pub(super) fn delta(&mut self, d: &BlobDelta) {
        let res = match &self.cand {
            Some(c) => self.engine.receive_delta(d, c),
            None => Err(AgentError::new("blob delta before Diff".into())),
        };
        if let Err(e) = res {
            if !self.delta_failed.iter().any(|(h, _)| *h == d.hash) {
                self.delta_failed.push((d.hash, e.to_string()));
            }
        }
    }

    /// Which of `blobs` the host still lacks after their deltas, and why
    /// each failed delta failed.
    pub(super) fn missing(&mut self, blobs: &[Hash]) -> Response {
        let Some(c) = &self.cand else { return Response::Error { message: "Missing before Diff".into() } };
        let missing = self.engine.still_missing(blobs, c);
        let failed = std::mem::take(&mut self.delta_failed);
        Response::Missing { missing, failed }
    }

    pub(super) fn apply(&mut self, confirm_timeout_ms: u64, stop_first: bool) -> Response {
        match (self.chunk_error.take(), self.cand.take()) {
            (Some(e), _) => failure(e),
            (None, None) => Response::Error { message: "Apply before Diff".into() },
            (None, Some(c)) => {
                let out = &mut self.out;
                let mut progress = |m: String| {
                    let _ = write_frame(out, &Response::Progress(m));
                };
                let opened = sealed::open_received(&self.layout, &self.bundle.host, &self.bundle.sealed);
                let done = opened.and_then(|()| self.engine.apply(c, confirm_timeout_ms, stop_first, &mut progress));
                answer(done, |o| {
                    watchdog::clear_report(&self.layout);
                    Response::Applied(o)
                })
            }
        }
    }

    pub(super) fn rollback(&mut self, to: Option<u64>, confirm_timeout_ms: u64) -> Response {
        let out = &mut self.out;
        let mut progress = |m: String| {
            let _ = write_frame(out, &Response::Progress(m));
        };
        let done = install::require_signed(&self.layout, "a rollback")
            .and_then(|()| self.engine.rollback(to, confirm_timeout_ms, &mut progress));
        answer(done, |o| {
            watchdog::clear_report(&self.layout);
            Response::Applied(o)
        })
    }

    pub(super) fn confirm(&mut self, generation: u64) -> Response {
        let current = self.engine.state.current;
        answer(self.engine.confirm(generation), |r| match r {
            Ok(()) => Response::Confirmed { generation },
            Err(why) => Response::NotConfirmed { generation, current, why },
        })
    }

    /// Prepare the reboot (see [`crate::boot`]), reply, and reboot: the
    /// session ends with it. Refused (a simulated host, a generation still
    /// activating), the session goes on.
    pub(super) fn reboot(&mut self, confirm_timeout_ms: u64, boot_timeout_ms: u64, sha256: &str) -> Result<Next> {
        match boot::prepare(&self.layout, self.env, confirm_timeout_ms, boot_timeout_ms, sha256) {
            Ok(boots) => {
                self.send(&Response::Rebooting { boots })?;
                self.out.flush().map_err(protocol)?;
                // The lock goes with this process; the reply is out.
                self.engine.release();
                std::thread::sleep(Duration::from_millis(200));
                self.env.reboot().map(|()| Next::End)
            }
            Err(e) => {
                self.send(&Response::Error { message: e.0 })?;
                Ok(Next::Continue)
            }
        }
    }
}
