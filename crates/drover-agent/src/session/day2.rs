//! The requests of day-2 operations and of looking at the host: the no-op
//! check, the current manifest, status, logs (followed until the controller
//! goes), exec, drain, the content of paths (`plan --diff`), and the peer
//! relay.

use std::io::Write;
use std::time::{Duration, Instant};

use drover_proto::{Hash, Response};

use super::{answer, Session};
use crate::logs::LogReader;
use crate::relay::{self, ServeRequest};
use crate::{inspect, ops, Result};

/// How often a following log session proves the controller is still there.
const HEARTBEAT: Duration = Duration::from_secs(2);

impl<W: Write> Session<W> {
    pub(super) fn check(&self, manifest: &Hash) -> Response {
        answer(self.engine.check(manifest), |(up_to_date, drift)| Response::Check { up_to_date, drift })
    }

    pub(super) fn current_manifest(&self) -> Response {
        answer(self.engine.current_manifest(), Response::CurrentManifest)
    }

    pub(super) fn status(&self) -> Response {
        answer(self.engine.status(), Response::Status)
    }

    pub(super) fn exec(&self, command: &str, timeout_ms: u64) -> Response {
        answer(ops::exec(command, Duration::from_millis(timeout_ms)), |(code, stdout, stderr, timed_out)| {
            Response::ExecResult { code, stdout, stderr, timed_out }
        })
    }

    /// `Drain` with a reason, `Undrain` without.
    pub(super) fn drain(&mut self, reason: Option<&str>) -> Response {
        let drained = reason.is_some();
        answer(self.engine.drain(reason), |services| Response::Drained { drained, services })
    }

    /// The last lines of a service's log; with `follow`, new ones until the
    /// controller goes away (the session then ends with an error).
    pub(super) fn logs(&mut self, service: &str, lines: u32, since_ms: Option<u64>, follow: bool) -> Result<Response> {
        let current = self.engine.current_manifest().ok().flatten();
        let reader = LogReader::open(&self.layout, self.env, current.as_ref(), service);
        let (batch, mut reader) = match reader.and_then(|mut r| Ok((r.initial(lines, since_ms)?, r))) {
            Err(e) => return Ok(Response::Error { message: e.0 }),
            Ok(read) => read,
        };
        self.send(&Response::LogLines(batch))?;
        if !follow {
            return Ok(Response::LogEnd);
        }
        // Until the controller goes away. A quiet log still gets an empty
        // batch every few seconds: a write is the only way to notice the
        // controller is gone, and a session must not outlive it.
        let mut last = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let more = reader.more().unwrap_or_default();
            if !more.is_empty() || last.elapsed() > HEARTBEAT {
                self.send(&Response::LogLines(more))?;
                last = Instant::now();
            }
        }
    }

    pub(super) fn read_paths(&self, paths: &[String], max_bytes: u64) -> Response {
        answer(inspect::read_paths(&self.layout, &self.engine.accounts, paths, max_bytes), Response::Paths)
    }

    pub(super) fn relay_serve(&self, r: &ServeRequest<'_>) -> Response {
        answer(relay::serve(&self.layout, r), |holding| Response::RelayServing { holding })
    }

    pub(super) fn relay_fetch(&mut self, peer: &str, secret: &str, blobs: &[(Hash, u64)]) -> Response {
        let out = &mut self.out;
        let mut progress = |m: String| {
            let _ = drover_proto::write_frame(out, &Response::Progress(m));
        };
        answer(relay::fetch(&self.layout, peer, secret, blobs, &mut progress), |(blobs, bytes)| {
            Response::RelayFetched { blobs, bytes }
        })
    }
}
