//! The real agent binary driven over its stdin/stdout, as the controller
//! drives it: one client for every test file that speaks the protocol.

// Each test file uses a different part of this client.
#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use drover_proto::frame::{encode, read_frame};
use drover_proto::{HostState, Request, Response, MAGIC, PROTOCOL_VERSION};

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
        match a.call(Request::Hello {
            protocol: PROTOCOL_VERSION,
            controller: "test".into(),
            idle_ms,
            read_only: false,
        }) {
            Response::Hello { state, .. } => a.state = state,
            other => panic!("{other:?}"),
        }
        a
    }

    pub fn send(&mut self, req: Request) {
        self.w.write_all(&encode(&req).unwrap()).unwrap();
        self.w.flush().unwrap();
    }

    /// Send `req` and return the reply, skipping progress frames.
    pub fn call(&mut self, req: Request) -> Response {
        self.send(req);
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
}
