//! A throwaway registry: Debian's `docker-registry` (distribution 2.x)
//! serving a temp dir on a free 127.0.0.1 port; stopped and deleted on
//! drop. Plain HTTP, as drover allows for loopback registries.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    ip: std::net::IpAddr,
    port: u16,
}

const BIN: &str = "/usr/bin/docker-registry";

/// The user of [`TestRegistry::start_with_auth`].
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret";
/// bcrypt of [`PASSWORD`] (cost 4: tests only), as htpasswd wants it.
const BCRYPT: &str = "$2b$04$sMVCM4qzpNIqBZJjgqtPsO.20H592Wm69nym1ztFO9GrTh1s1D6sS";

fn free_port(ip: std::net::IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// `GET /v2/` answers (any status: 401 too means it is up).
fn answers(ip: std::net::IpAddr, port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((ip, port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

impl TestRegistry {
    /// Start one (retried on another port if the first was taken).
    pub fn start() -> TestRegistry {
        TestRegistry::start_inner(false, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// One that wants HTTP basic auth: [`USER`] with [`PASSWORD`].
    pub fn start_with_auth() -> TestRegistry {
        TestRegistry::start_inner(true, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// One listening on `ip` (an address of the controller that lab hosts
    /// reach, for a dockerd on a lab host to pull from: benchmarks).
    pub fn start_at(ip: std::net::IpAddr) -> TestRegistry {
        TestRegistry::start_inner(false, ip)
    }

    fn start_inner(auth: bool, ip: std::net::IpAddr) -> TestRegistry {
        assert!(
            Path::new(BIN).exists(),
            "{BIN} is missing: install Debian's `docker-registry` (bash scripts/deps --test)"
        );
        let dir = tempfile::Builder::new().prefix("drover-registry-").tempdir().expect("temp dir");
        let mut auth_yml = String::new();
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{BCRYPT}\n")).unwrap();
            auth_yml = format!("auth:\n  htpasswd:\n    realm: drover-test\n    path: {}\n", htpasswd.display());
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port(ip);
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {ip}:{port}\n{auth_yml}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if answers(ip, port) {
                    return TestRegistry { child, dir, ip, port };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start 5 times; its log:\n{last}");
    }

    /// `127.0.0.1:PORT` (or the address of [`TestRegistry::start_at`]).
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `127.0.0.1:PORT/repo:tag`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// Where the registry keeps blob `digest` (to corrupt it in a test).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
