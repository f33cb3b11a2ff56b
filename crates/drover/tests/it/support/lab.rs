//! Helpers of the `drover lab` tests (`lab.rs`, `lab_systemd.rs`): a lab
//! per test that is always taken down, SSH with pinned host keys, and the
//! list of everything a lab could leave behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::lab_name::LabName;
use super::DROVER;

pub fn require_root() {
    if !cfg!(target_os = "linux") {
        panic!("the lab tests need Linux");
    }
    let euid = fs::metadata("/proc/self").expect("/proc is mounted").uid();
    assert_eq!(
        euid, 0,
        "the lab tests need root (namespaces, links, mounts): run `sudo -E cargo test -p drover --test it -- lab::`"
    );
}

/// Where labs live for this run (the default unless DROVER_LAB_DIR is set).
pub fn state_root() -> PathBuf {
    std::env::var_os("DROVER_LAB_DIR").map_or_else(|| PathBuf::from("/var/lib/drover-lab"), PathBuf::from)
}

/// A lab for one test, removed when dropped.
pub struct TestLab {
    pub name: String,
    _held: LabName,
}

impl TestLab {
    pub fn new(test: &str) -> TestLab {
        require_root();
        let name = format!("it{}-{test}", std::process::id() % 100_000);
        let lab = TestLab { _held: LabName::claim(&name), name };
        lab.drover(&["down"]); // a previous run with the same pid
        lab
    }

    pub fn drover(&self, args: &[&str]) -> Output {
        Command::new(DROVER)
            .arg("lab")
            .args(args)
            .args(["--lab", &self.name])
            .stdin(Stdio::null())
            .output()
            .expect("run drover")
    }

    /// Run and require success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.drover(args);
        assert!(
            out.status.success(),
            "drover lab {} --lab {} failed ({}):\n{}{}",
            args.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    pub fn dir(&self) -> PathBuf {
        state_root().join(&self.name)
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let out = self.drover(&["down"]);
        if !out.status.success() {
            eprintln!("cleanup of lab {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Host name -> (address, host key), from `drover lab inventory`.
pub fn inventory(lab: &TestLab) -> (PathBuf, BTreeMap<String, (String, String)>) {
    let text = lab.ok(&["inventory"]);
    let inv: toml::Table = toml::from_str(&text).expect("inventory parses");
    let key = PathBuf::from(inv["defaults"]["key"].as_str().unwrap());
    assert_eq!(inv["defaults"]["user"].as_str(), Some("root"));
    let hosts = inv["hosts"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, h)| {
            assert_eq!(h["groups"].as_array().unwrap()[0].as_str(), Some(lab.name.as_str()));
            (name.clone(), (h["address"].as_str().unwrap().to_string(), h["host-key"].as_str().unwrap().to_string()))
        })
        .collect();
    (key, hosts)
}

/// `ssh` as root with the lab key, the host key pinned, no prompts.
pub fn ssh_root(known_hosts: &Path, key: &Path, address: &str, command: &str) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(key)
        .arg(format!("root@{address}"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

pub fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:22").parse().unwrap()
}

/// Median TCP connect time to port 22: one round trip.
pub fn connect_time(ip: &str) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            TcpStream::connect_timeout(&addr(ip), Duration::from_secs(2)).expect("connect");
            t.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

/// The SSH banner, if one arrives within `timeout`.
pub fn banner(ip: &str, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr(ip), timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    if text.starts_with("SSH-2.0-") {
        Ok(text)
    } else {
        Err(format!("not a banner: {text:?}"))
    }
}

/// Everything a lab could leave behind, as readable strings.
pub fn leftovers(lab_dir: &Path, idx: &str, netns_inodes: &[u64]) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("dl{idx}");
    let ours =
        |name: &str| name.strip_prefix(&prefix).is_some_and(|r| r == "br" || r.starts_with(['h', 'v', 'x', 'y']));
    for e in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if ours(&n) {
            left.push(format!("netns {n}"));
        }
    }
    for e in fs::read_dir("/sys/class/net").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if ours(&n) {
            left.push(format!("link {n}"));
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        if line.split(' ').nth(4).is_some_and(|m| Path::new(m).starts_with(lab_dir)) {
            left.push(format!("mount {line}"));
        }
    }
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.starts_with(lab_dir)) {
            left.push(format!("process {pid} rooted in the lab"));
        }
        if fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| netns_inodes.contains(&m.ino())) {
            left.push(format!("process {pid} in a lab namespace"));
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("--drover-lab-wire") && cmdline.contains(&format!("\0{prefix}v")) {
            left.push(format!("link emulator {pid}"));
        }
    }
    if lab_dir.exists() {
        left.push(format!("directory {}", lab_dir.display()));
    }
    // systemd hosts' cgroups, in whichever hierarchy the machine has, and
    // container hosts' in every hierarchy (cpu, memory, pids, ...).
    let name = lab_dir.file_name().unwrap();
    let mut tops: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup").unwrap().flatten().map(|e| e.path()).collect();
    tops.push(PathBuf::from("/sys/fs/cgroup"));
    for top in tops {
        let dir = top.join("drover-lab").join(name);
        if dir.exists() {
            left.push(format!("cgroup {}", dir.display()));
        }
    }
    left
}

/// Run `down` and check nothing is left.
pub fn down_and_check_clean(lab: &TestLab, idx: &str, hosts: usize) {
    let inodes: Vec<u64> =
        (1..=hosts).filter_map(|n| fs::metadata(format!("/run/netns/dl{idx}h{n}")).ok().map(|m| m.ino())).collect();
    assert_eq!(inodes.len(), hosts, "every host has its namespace before down");
    let out = lab.ok(&["down"]);
    assert!(out.contains("removed"), "{out}");
    let left = leftovers(&lab.dir(), idx, &inodes);
    assert!(left.is_empty(), "lab {} left behind: {left:#?}", lab.name);
}

/// The third octet of the lab's addresses: its index.
pub fn lab_index(address: &str) -> String {
    address.split('.').nth(2).unwrap().to_string()
}
