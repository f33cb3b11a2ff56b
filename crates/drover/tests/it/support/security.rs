//! The harness of `security.rs`: a lab fleet with root SSH to its hosts
//! (pinned keys), the real agent on each host, and `op` as the attacker
//! (`relay_peer.py`, run as `op` on a host, speaks to the relay).

use std::fs;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use drover_proto::frame::{encode, read_frame};
use drover_proto::{Hash, Request, Response, MAGIC, PROTOCOL_VERSION};

use super::{noise, Fleet, Run};

const PEER_SCRIPT: &str = include_str!("security/relay_peer.py");
/// Where the tests put the agent on a host (root-owned, like the real one).
pub const AGENT_AT: &str = "/usr/local/lib/drover-sec-test/agent";
pub const RELAY_PORT: u16 = 7787;

pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut raw).unwrap();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A lab fleet, with root SSH to its hosts (pinned keys) and the agent.
pub struct Lab {
    pub f: Fleet,
    key: PathBuf,
    known: PathBuf,
}

impl Lab {
    pub fn new(name: &str, n: usize) -> Lab {
        let f = Fleet::new(name, n);
        let lab = drover_lab::Lab::open(name).unwrap();
        let known = f.project().with_extension("known_hosts");
        let lines: String = lab.hosts().iter().map(|h| format!("{} {}\n", h.address, h.host_key)).collect();
        fs::write(&known, lines).unwrap();
        for i in 0..n {
            let at = f.host_file(i, AGENT_AT);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            fs::write(&at, drover::agent_bin::bytes()).unwrap();
            fs::set_permissions(&at, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Lab { f, key: lab.key_path(), known }
    }

    pub fn addr(&self, i: usize) -> String {
        self.f.lab_hosts()[i].address.to_string()
    }

    /// `remote` run through root's shell on host `i`, over SSH.
    pub fn ssh(&self, i: usize, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known.display()))
            .arg("-i")
            .arg(&self.key)
            .arg(format!("root@{}", self.addr(i)))
            .arg(remote);
        c
    }

    pub fn run(&self, i: usize, remote: &str) -> Run {
        Run::from(self.ssh(i, remote).stdin(Stdio::null()).output().unwrap())
    }

    /// `relay_peer.py ARGS` as `op` on host `i`; its output lines.
    pub fn peer(&self, i: usize, args: &[&str]) -> Vec<String> {
        let remote = format!("setpriv --reuid=op --regid=op --init-groups python3 - {}", args.join(" "));
        let mut c =
            self.ssh(i, &remote).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(PEER_SCRIPT.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "peer {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<String> = stdout.lines().map(String::from).collect();
        assert!(lines.first().is_some_and(|l| l.starts_with("uid ") && l != "uid 0"), "not unprivileged: {lines:?}");
        lines
    }

    /// The agent on host `i`, started over SSH as the controller starts it.
    pub fn agent(&self, i: usize) -> Agent {
        let mut child = self
            .ssh(i, &format!("{AGENT_AT} serve"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        w.write_all(MAGIC).unwrap();
        let mut a = Agent { child, w, r };
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            controller: "security test".into(),
            idle_ms: 0,
            read_only: false,
        };
        assert!(matches!(a.call(&hello), Response::Hello { .. }));
        a
    }
}

pub struct Agent {
    child: Child,
    w: ChildStdin,
    r: BufReader<ChildStdout>,
}

impl Agent {
    pub fn call(&mut self, req: &Request) -> Response {
        self.w.write_all(&encode(req).unwrap()).unwrap();
        self.w.flush().unwrap();
        loop {
            match read_frame::<Response, _>(&mut self.r).unwrap() {
                Response::Progress(_) => continue,
                other => return other,
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn error_of(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Two hosts; h1 holds a blob and serves it on the relay with a fresh
/// secret, at most `max_conns` connections at once.
pub struct Relay {
    pub lab: Lab,
    pub blob: Vec<u8>,
    pub hash: Hash,
    pub secret: String,
}

impl Relay {
    pub fn new(name: &str, max_conns: u32) -> Relay {
        let lab = Lab::new(name, 2);
        let blob = noise(1 << 20);
        let hash = Hash(*blake3::hash(&blob).as_bytes());
        // As if a run had delivered it to h1.
        let at = lab.f.host_file(0, &format!("/var/lib/drover/blobs/{}", hash.to_hex()));
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        fs::write(&at, &blob).unwrap();
        let secret = random_hex(32);
        let mut a = lab.agent(0);
        let req = Request::RelayServe {
            bind: lab.addr(0),
            port: RELAY_PORT,
            secret: secret.clone(),
            blobs: vec![hash],
            idle_ms: 120_000,
            max_conns,
        };
        match a.call(&req) {
            Response::RelayServing { holding } => assert_eq!(holding, vec![hash]),
            other => panic!("{other:?}"),
        }
        Relay { lab, blob, hash, secret }
    }

    pub fn server(&self) -> String {
        format!("{}:{RELAY_PORT}", self.lab.addr(0))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.lab.f.host_file(0, &format!("/var/lib/drover/relay/{RELAY_PORT}.log")))
            .unwrap_or_default()
    }

    /// h2's agent fetches the blob with `secret`.
    pub fn fetch_from_h2(&self, secret: &str) -> Response {
        let mut a = self.lab.agent(1);
        let req = Request::RelayFetch {
            peer: self.server(),
            secret: secret.into(),
            blobs: vec![(self.hash, self.blob.len() as u64)],
        };
        a.call(&req)
    }
}
