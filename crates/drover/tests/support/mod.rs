//! Test harness: a lab fleet of its own plus a fresh quickstart project,
//! driven through the real `drover` binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use drover_lab::{Init, LabHost};

pub const DROVER: &str = env!("CARGO_BIN_EXE_drover");

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

/// One scenario as two tests, `$runit` on runit lab hosts and `$systemd` on
/// systemd ones: the body is written once (`fn $scenario(init: Init)`), and
/// a failure names the init it failed on.
#[allow(unused_macros)] // not every test file has such scenarios
macro_rules! on_both_inits {
    ($scenario:ident: $runit:ident, $systemd:ident) => {
        #[test]
        fn $runit() {
            $scenario(drover_lab::Init::Runit)
        }
        #[test]
        fn $systemd() {
            $scenario(drover_lab::Init::Systemd)
        }
    };
}

pub struct Fleet {
    name: String,
    init: Init,
    dir: tempfile::TempDir,
    hosts: Vec<LabHost>,
    /// With `DROVER_TEST_STATE=postgres`: the database every command of
    /// this fleet uses (`DROVER_STATE_URL`), on the test process's own
    /// throwaway server; else the project's SQLite file.
    state_url: Option<String>,
}

/// The host-lock lease of fleets on PostgreSQL (`[state] lock-lease`):
/// short, so a test that kills a controller waits little for its locks.
pub const PG_LEASE: std::time::Duration = std::time::Duration::from_secs(2);

impl Fleet {
    /// A runit lab of `n` hosts named `name`, and a quickstart project for it.
    pub fn new(name: &str, n: usize) -> Fleet {
        Fleet::with_init(name, n, Init::Runit)
    }

    /// The same on hosts whose pid 1 is `init`. The lab is named
    /// `<name>-<init>` so both variants of a scenario can run side by side.
    pub fn on(name: &str, n: usize, init: Init) -> Fleet {
        Fleet::with_init(&format!("{name}-{init}"), n, init)
    }

    fn with_init(name: &str, n: usize, init: Init) -> Fleet {
        assert!(
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "the end-to-end tests need root (they run a lab fleet of network namespaces)"
        );
        let _ = lab_cmd(name, &["down"]);
        let up = lab_cmd(name, &["up", &n.to_string(), "--init", init.as_str()]);
        assert_eq!(up.code, 0, "lab up failed:\n{}\n{}", up.stdout, up.stderr);
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("proj");
        let scaffold = Run::from(Command::new(DROVER).arg("init").arg(&proj).output().unwrap());
        assert_eq!(scaffold.code, 0, "{}", scaffold.stderr);
        let inv = lab_cmd(name, &["inventory"]);
        assert_eq!(inv.code, 0, "{}", inv.stderr);
        std::fs::write(proj.join("inventory.toml"), inv.stdout).unwrap();
        let hosts = drover_lab::Lab::open(name).expect("lab state").hosts().to_vec();
        let state_url = match std::env::var("DROVER_TEST_STATE").as_deref() {
            Ok("postgres") => {
                let toml = proj.join("drover.toml");
                let mut text = std::fs::read_to_string(&toml).unwrap();
                text.push_str(&format!("\n[state]\nlock-lease = \"{}s\"\n", PG_LEASE.as_secs()));
                std::fs::write(&toml, text).unwrap();
                Some(drover_pgtest::shared().fresh_db())
            }
            Ok("sqlite") | Err(_) => None,
            Ok(other) => panic!("DROVER_TEST_STATE={other}: use postgres or sqlite"),
        };
        Fleet { name: name.to_string(), init, dir, hosts, state_url }
    }

    pub fn init(&self) -> Init {
        self.init
    }

    /// Grow the lab to `n` hosts (`lab up N` adds h<k+1>..h<n>, never
    /// removes any) and return the lab's new inventory.toml; the project's
    /// inventory is left for the test to change.
    pub fn grow(&mut self, n: usize) -> String {
        let up = lab_cmd(&self.name, &["up", &n.to_string(), "--init", self.init.as_str()]);
        assert_eq!(up.code, 0, "lab up {n} failed:\n{}\n{}", up.stdout, up.stderr);
        self.hosts = drover_lab::Lab::open(&self.name).expect("lab state").hosts().to_vec();
        let inv = lab_cmd(&self.name, &["inventory"]);
        assert_eq!(inv.code, 0, "{}", inv.stderr);
        inv.stdout
    }

    /// The supervisor's word for a running service in `drover status`
    /// (runit's `sv status`, systemd's `systemctl is-active`).
    pub fn running_state(&self) -> &'static str {
        match self.init {
            Init::Runit => "run",
            Init::Systemd => "active",
        }
    }

    /// The same for a stopped service.
    pub fn stopped_state(&self) -> &'static str {
        match self.init {
            Init::Runit => "down",
            Init::Systemd => "inactive",
        }
    }

    pub fn project(&self) -> PathBuf {
        self.dir.path().join("proj")
    }

    pub fn lab_hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    pub fn drover(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(self.project()).args(args).stdin(Stdio::null());
        match &self.state_url {
            Some(u) => c.env("DROVER_STATE_URL", u),
            None => c.env_remove("DROVER_STATE_URL"),
        };
        c
    }

    /// The PostgreSQL URL this fleet's state is in, if it is.
    pub fn state_url(&self) -> Option<&str> {
        self.state_url.as_deref()
    }

    /// After SIGKILLing a controller: on PostgreSQL its host locks stay
    /// until their lease runs out (a pid proves nothing across machines),
    /// so wait that long; on SQLite a dead pid frees them at once.
    pub fn wait_for_dead_controllers_leases(&self) {
        if self.state_url.is_some() {
            std::thread::sleep(PG_LEASE + std::time::Duration::from_millis(500));
        }
    }

    pub fn spawn_drover(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn apply_json(&self, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "--json"];
        args.extend_from_slice(extra);
        self.drover(&args)
    }

    pub fn lab(&self, args: &[&str]) -> Run {
        lab_cmd(&self.name, args)
    }

    /// A path inside host `i`'s root filesystem, as seen from the controller.
    pub fn host_file(&self, i: usize, path: &str) -> PathBuf {
        self.hosts[i].root.join(path.trim_start_matches('/'))
    }

    /// Every file the host has written since boot (its overlay upper dir),
    /// with sizes and mtimes.
    pub fn upper_snapshot(&self, i: usize) -> BTreeMap<PathBuf, (u64, i128)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![self.hosts[i].upper.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                if md.is_dir() {
                    stack.push(e.path());
                    continue;
                }
                let t = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
                out.insert(e.path(), (md.size(), t));
            }
        }
        out
    }

    /// The pid the host's supervisor reports for a service on host `i`
    /// (runit's `supervise/pid`, systemd's `MainPID`); empty if none.
    pub fn service_pid(&self, i: usize, service: &str) -> String {
        match self.init {
            Init::Runit => std::fs::read_to_string(self.host_file(i, &format!("/etc/sv/{service}/supervise/pid")))
                .unwrap_or_default()
                .trim()
                .to_string(),
            Init::Systemd => {
                let pid = self.host_sh(i, &format!("systemctl show --property=MainPID --value {service}"));
                if pid == "0" {
                    String::new()
                } else {
                    pid
                }
            }
        }
    }

    /// Run `script` with /bin/sh on host `i` (through `drover exec`) and
    /// return its trimmed stdout; panics if it fails.
    pub fn host_sh(&self, i: usize, script: &str) -> String {
        let host = &self.hosts[i].name;
        let r = self.drover(&["exec", host, "--", script]);
        assert_eq!(r.code, 0, "exec on {host}: {script}\n{}\n{}", r.stdout, r.stderr);
        // `=== h1 (exit 0)` then the output.
        r.stdout.split_once('\n').map(|(_, out)| out).unwrap_or("").trim().to_string()
    }

    /// SIGKILL every `drover-agent serve` process of host `i`. Returns how many.
    pub fn kill_agent(&self, i: usize) -> usize {
        let out = Command::new("ip").args(["netns", "pids", &self.hosts[i].netns]).output().unwrap();
        let mut n = 0;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("/agent-") && cmd.ends_with(" serve ") && !cmd.starts_with("sudo") {
                let _ = Command::new("kill").args(["-9", pid]).status();
                n += 1;
            }
        }
        n
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let r = lab_cmd(&self.name, &["down"]);
        if r.code != 0 {
            eprintln!("lab down {} failed: {}", self.name, r.stderr);
        }
    }
}

fn lab_cmd(name: &str, args: &[&str]) -> Run {
    let mut c = Command::new(DROVER);
    c.arg("lab").args(args).arg("--lab").arg(name).stdin(Stdio::null());
    Run::from(c.output().unwrap())
}

/// A plain HTTP GET (body only), without needing curl on the machine.
pub fn curl(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(hostport).unwrap_or_else(|e| panic!("connect {hostport}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(body)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A quickstart project (`drover init`) in `dir/project` with `n` hosts
/// named s1..sn, for `--simulate` runs (their addresses are never dialled).
pub fn sim_project(dir: &Path, n: usize) -> PathBuf {
    let proj = dir.join("project");
    let init = Run::from(Command::new(DROVER).arg("init").arg(&proj).output().unwrap());
    assert_eq!(init.code, 0, "{}", init.stderr);
    let mut inv = String::new();
    for i in 1..=n {
        inv.push_str(&format!("[hosts.s{i}]\naddress = \"10.99.{}.{}\"\n\n", i / 256, i % 256));
    }
    std::fs::write(proj.join("inventory.toml"), inv).unwrap();
    proj
}

/// Incompressible bytes (zstd cannot shrink them), deterministic.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
