//! The real agent binary driven over its stdin/stdout, as the controller
//! drives it: one client for every test that speaks the protocol.

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use drover_proto::frame::{encode, read_frame};
use drover_proto::{ApplyOutcome, BlobChunk, HostState, Request, Response, MAGIC, PROTOCOL_VERSION};

use super::files::{manifest, Files};

pub struct Agent {
    pub child: Child,
    pub w: ChildStdin,
    pub r: BufReader<ChildStdout>,
    /// What the agent said in its hello (tests advance `next` as they apply).
    pub state: HostState,
}

impl Agent {
    /// `drover-agent serve FLAGS --root ROOT`, fed `preamble` before the
    /// protocol's magic (what a sudo password prompt leaves on stdin), then
    /// greeted with the controller's idle limit `idle_ms`.
    pub fn spawn(root: &Path, flags: &[&str], preamble: &[u8], idle_ms: u64) -> Agent {
        Agent::open(root, flags, preamble, idle_ms, false)
    }

    /// A read-only session (`Hello { read_only: true }`, what `drover plan`
    /// opens).
    pub fn read_only(root: &Path) -> Agent {
        Agent::open(root, &[], b"", 0, true)
    }

    fn open(root: &Path, flags: &[&str], preamble: &[u8], idle_ms: u64, read_only: bool) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover-agent"))
            .arg("serve")
            .args(flags)
            .arg("--root")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        w.write_all(preamble).unwrap();
        w.write_all(MAGIC).unwrap();
        let mut a = Agent { child, w, r, state: HostState::default() };
        match a.call(Request::Hello { protocol: PROTOCOL_VERSION, controller: "test".into(), idle_ms, read_only }) {
            Response::Hello { state, .. } => a.state = state,
            other => panic!("{other:?}"),
        }
        a
    }

    /// End the session but keep the process (`Detach`, what the resident
    /// sends between commands); the agent must answer `Detached`.
    pub fn detach(&mut self) {
        let r = self.call(Request::Detach);
        assert!(matches!(r, Response::Detached), "{r:?}");
    }

    /// A new session on the same process after [`Agent::detach`]: the
    /// magic again (after `preamble`, a sudo password line the resident's
    /// client sends every time), then a normal `Hello`.
    pub fn hello_again(&mut self, preamble: &[u8]) {
        self.w.write_all(preamble).unwrap();
        self.w.write_all(MAGIC).unwrap();
        let hello =
            Request::Hello { protocol: PROTOCOL_VERSION, controller: "test".into(), idle_ms: 0, read_only: false };
        match self.call(hello) {
            Response::Hello { state, .. } => self.state = state,
            other => panic!("{other:?}"),
        }
    }

    pub fn send(&mut self, req: Request) {
        self.w.write_all(&encode(&req).unwrap()).unwrap();
        self.w.flush().unwrap();
    }

    /// Send `req` and return the reply, skipping progress frames.
    pub fn call(&mut self, req: Request) -> Response {
        self.send(req);
        self.recv()
    }

    /// The next reply, skipping progress frames.
    pub fn recv(&mut self) -> Response {
        loop {
            match read_frame::<Response, _>(&mut self.r).unwrap() {
                Response::Progress(_) => continue,
                other => return other,
            }
        }
    }

    pub fn bye(mut self) {
        let _ = self.call(Request::Bye);
        let _ = self.child.wait();
    }

    /// Diff, send what is missing (from what already arrived), apply; the
    /// next generation number, and the current one once activated, follow.
    pub fn apply(&mut self, files: &Files, confirm_ms: u64) -> Response {
        let (m, blobs) = manifest(files);
        self.apply_manifest(m, &blobs, confirm_ms)
    }

    /// [`Agent::apply`] of a manifest built by the test (with services).
    pub fn apply_manifest(
        &mut self,
        m: drover_proto::Manifest,
        blobs: &std::collections::BTreeMap<drover_proto::Hash, Vec<u8>>,
        confirm_ms: u64,
    ) -> Response {
        let generation = self.state.next;
        let Response::Diff { missing, .. } = self.call(Request::Diff { manifest: m, generation }) else {
            panic!("diff")
        };
        for (h, have) in missing {
            let data = &blobs[&h];
            self.send(Request::Chunk(BlobChunk {
                hash: h,
                offset: have,
                data: zstd::encode_all(&data[have as usize..], 1).unwrap(),
            }));
        }
        let r = self.call(Request::Apply { confirm_timeout_ms: confirm_ms, stop_first: false });
        match r {
            Response::Applied(ApplyOutcome::Activated { generation, .. }) => {
                self.state.current = Some(generation);
                self.state.next = generation + 1;
            }
            // A failed generation's number is used up too.
            Response::Applied(ApplyOutcome::RolledBack { failed, .. }) => self.state.next = failed + 1,
            _ => {}
        }
        r
    }
}
