//! The `drover` binary under test, what a run of it printed, and the
//! throwaway projects the tests that need no lab run it on.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `drover` binary Cargo built for these tests.
pub const DROVER: &str = env!("CARGO_BIN_EXE_drover");

/// A finished command: exit code (-1 if killed by a signal) and its output.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The per-host reports of a `--json` run.
    pub fn hosts(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr));
        v["hosts"].as_array().cloned().unwrap_or_default()
    }
}

/// Panics with both outputs unless `r` exited 0.
pub fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
}

/// `drover -C dir args…`, with no input.
pub fn drover_in(dir: &Path, args: &[&str]) -> Run {
    Run::from(Command::new(DROVER).arg("-C").arg(dir).args(args).stdin(Stdio::null()).output().unwrap())
}

/// `drover args…` run in `dir` (relative paths in `args` are under it),
/// with no input.
pub fn drover_at(dir: &Path, args: &[&str]) -> Run {
    Run::from(Command::new(DROVER).current_dir(dir).args(args).stdin(Stdio::null()).output().unwrap())
}

/// A quickstart project (`drover init`) at `proj`.
pub fn init_project(proj: &Path) {
    let init = Run::from(Command::new(DROVER).arg("init").arg(proj).output().unwrap());
    assert_eq!(init.code, 0, "{}", init.stderr);
}

/// A quickstart project in `dir/project` with `n` hosts named s1..sn, for
/// `--simulate` runs (their addresses are never dialled).
pub fn sim_project(dir: &Path, n: usize) -> PathBuf {
    let proj = dir.join("project");
    init_project(&proj);
    let mut inv = String::new();
    for i in 1..=n {
        inv.push_str(&format!("[hosts.s{i}]\naddress = \"10.99.{}.{}\"\n\n", i / 256, i % 256));
    }
    std::fs::write(proj.join("inventory.toml"), inv).unwrap();
    proj
}

/// Poll `f` until it gives `Some`, for at most `limit`; panics naming
/// `what` once that is over.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP GET (body only), without needing curl on the machine.
pub fn curl(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(hostport).unwrap_or_else(|e| panic!("connect {hostport}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(body)
}
