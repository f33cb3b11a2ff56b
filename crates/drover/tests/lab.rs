//! End-to-end tests of `drover lab`: real namespaces, real sshd, real
//! OpenSSH client, driven through the `drover` binary.
//!
//! They need root and Linux and FAIL (not skip) without them, so a green run
//! always means the lab was exercised. Each test uses its own lab (labs are
//! independent, so the tests run in parallel) and a guard that runs
//! `drover lab down` however the test ends. The base root filesystem is
//! built on first use (about a minute) and cached.
//!
//! Issue 2 (the lab fleet) asks for exactly these checks. Run:
//! `sudo -E cargo test -p drover --test lab`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DROVER: &str = env!("CARGO_BIN_EXE_drover");

fn require_root() {
    if !cfg!(target_os = "linux") {
        panic!("the lab tests need Linux");
    }
    let euid = fs::metadata("/proc/self").expect("/proc is mounted").uid();
    assert_eq!(
        euid, 0,
        "the lab tests need root (namespaces, links, mounts): run `sudo -E cargo test -p drover --test lab`"
    );
}

/// Where labs live for this run (the default unless DROVER_LAB_DIR is set).
fn state_root() -> PathBuf {
    std::env::var_os("DROVER_LAB_DIR").map_or_else(|| PathBuf::from("/var/lib/drover-lab"), PathBuf::from)
}

/// A lab for one test, removed when dropped.
struct TestLab {
    name: String,
}

impl TestLab {
    fn new(test: &str) -> TestLab {
        require_root();
        let name = format!("it{}-{test}", std::process::id() % 100_000);
        let lab = TestLab { name };
        lab.drover(&["down"]); // a previous run with the same pid
        lab
    }

    fn drover(&self, args: &[&str]) -> Output {
        Command::new(DROVER)
            .arg("lab")
            .args(args)
            .args(["--lab", &self.name])
            .stdin(Stdio::null())
            .output()
            .expect("run drover")
    }

    /// Run and require success; return stdout.
    fn ok(&self, args: &[&str]) -> String {
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

    fn dir(&self) -> PathBuf {
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
fn inventory(lab: &TestLab) -> (PathBuf, BTreeMap<String, (String, String)>) {
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
fn ssh_root(known_hosts: &Path, key: &Path, address: &str, command: &str) -> Output {
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

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:22").parse().unwrap()
}

/// Median TCP connect time to port 22: one round trip.
fn connect_time(ip: &str) -> Duration {
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
fn banner(ip: &str, timeout: Duration) -> Result<String, String> {
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
fn leftovers(lab_dir: &Path, idx: &str, netns_inodes: &[u64]) -> Vec<String> {
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
    // systemd hosts' cgroups, in whichever hierarchy the machine has.
    let name = lab_dir.file_name().unwrap();
    for top in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let dir = Path::new(top).join("drover-lab").join(name);
        if dir.exists() {
            left.push(format!("cgroup {}", dir.display()));
        }
    }
    left
}

/// Run `down` and check nothing is left.
fn down_and_check_clean(lab: &TestLab, idx: &str, hosts: usize) {
    let inodes: Vec<u64> =
        (1..=hosts).filter_map(|n| fs::metadata(format!("/run/netns/dl{idx}h{n}")).ok().map(|m| m.ino())).collect();
    assert_eq!(inodes.len(), hosts, "every host has its namespace before down");
    let out = lab.ok(&["down"]);
    assert!(out.contains("removed"), "{out}");
    let left = leftovers(&lab.dir(), idx, &inodes);
    assert!(left.is_empty(), "lab {} left behind: {left:#?}", lab.name);
}

/// The third octet of the lab's addresses: its index.
fn lab_index(address: &str) -> String {
    address.split('.').nth(2).unwrap().to_string()
}

#[test]
fn lab_hosts_answer_ssh_take_faults_and_leave_nothing_behind() {
    let lab = TestLab::new("fleet");
    let summary = lab.ok(&["up", "3"]);
    assert!(summary.contains("3 runit hosts up"), "{summary}");
    assert!(lab.ok(&["up", "3"]).contains("(0 new)"), "up is idempotent");

    let (key, hosts) = inventory(&lab);
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["h1", "h2", "h3"]);
    let known_hosts = lab.dir().join("test_known_hosts");
    let lines: String = hosts.values().map(|(a, k)| format!("{a} {k}\n")).collect();
    fs::write(&known_hosts, lines).unwrap();

    // Root by key, host keys pinned.
    for (name, (address, _)) in &hosts {
        let out = ssh_root(&known_hosts, &key, address, "hostname");
        assert!(out.status.success(), "ssh root@{address}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);
    }

    // The non-root user: password login, and sudo that wants the password.
    let csv = lab.ok(&["inventory", "--csv"]);
    let first: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let [address, user, password] = first[..] else { panic!("bad csv line {csv:?}") };
    assert_eq!((address, user), (hosts["h1"].0.as_str(), "op"));
    let askpass = lab.dir().join("test_askpass");
    fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    Command::new("chmod").arg("700").arg(&askpass).status().unwrap();
    let script =
        format!("id -un; echo '{password}' | sudo -S -p '' id -un; echo wrong | sudo -S -p '' true || echo refused");
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg(format!("op@{address}"))
        .arg(&script)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "op\nroot\nrefused\n", "{}", String::from_utf8_lossy(&out.stderr));

    let (h1, h2, h3) = (&hosts["h1"].0, &hosts["h2"].0, &hosts["h3"].0);
    let idx = lab_index(h1);

    // Delay: round trip grows by the delay.
    lab.ok(&["fault", "h3", "delay", "100ms"]);
    let (slow, fast) = (connect_time(h3), connect_time(h1));
    assert!(slow >= Duration::from_millis(95), "delayed host answered in {slow:?}");
    assert!(slow < Duration::from_millis(400), "delayed host too slow: {slow:?}");
    assert!(fast < Duration::from_millis(30), "healthy host slowed down: {fast:?}");
    assert!(lab.ok(&["status"]).contains("delay 100ms"));

    // Link cut: connects time out.
    lab.ok(&["fault", "h2", "down"]);
    match TcpStream::connect_timeout(&addr(h2), Duration::from_secs(2)) {
        Err(e) => assert!(matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::HostUnreachable), "{e:?}"),
        Ok(_) => panic!("connected to a host whose link is down"),
    }

    // Freeze: the kernel may accept the connection, sshd never speaks.
    lab.ok(&["fault", "h1", "freeze"]);
    assert!(banner(h1, Duration::from_secs(2)).is_err(), "a frozen host sent a banner");
    let status: serde_json::Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let states: Vec<&str> = status.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["frozen", "down", "up"]);
    lab.ok(&["fault", "h1", "thaw"]);
    banner(h1, Duration::from_secs(2)).expect("thawed host answers");

    // Heal: all normal again.
    lab.ok(&["heal", "all"]);
    for h in [h1, h2, h3] {
        banner(h, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{h} after heal: {e}"));
    }
    let healed = connect_time(h3);
    assert!(healed < Duration::from_millis(30), "delay survived heal: {healed:?}");
    assert!(!lab.ok(&["status"]).contains("delay"));

    down_and_check_clean(&lab, &idx, 3);
    let status = lab.drover(&["status"]);
    assert!(!status.status.success() && String::from_utf8_lossy(&status.stderr).contains("not up"));
}

#[test]
fn down_cleans_up_after_a_crash() {
    let lab = TestLab::new("crash");
    lab.ok(&["up", "2"]);
    let (_, hosts) = inventory(&lab);
    let idx = lab_index(&hosts["h1"].0);
    // Leave as much state behind as possible: a link emulator (or qdisc),
    // a frozen host, a supervisor killed, and the state file gone.
    lab.ok(&["fault", "h1", "delay", "10ms", "loss", "1%"]);
    lab.ok(&["fault", "h2", "freeze"]);
    let h1_root = lab.dir().join("hosts/h1/merged");
    let runsvdir = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == h1_root)
                && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "runsvdir")
        })
        .expect("h1 runs runsvdir");
    Command::new("kill").args(["-9", &runsvdir.to_string()]).status().unwrap();
    fs::remove_file(lab.dir().join("state.json")).unwrap();

    down_and_check_clean(&lab, &idx, 2);
}

#[test]
fn up_refuses_bad_requests_clearly() {
    let lab = TestLab::new("args");
    let out = lab.drover(&["up", "241"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("240"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = lab.drover(&["fault", "h1", "delay", "100ms"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not up"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(DROVER).args(["lab", "status", "--lab", "Bad/Name"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid lab name"));
    // Not root: refused with exit code 3 and a message saying so.
    if Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", DROVER, "lab", "up", "1", "--lab", &lab.name])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("needs root"));
    }
}

/// `--init systemd`: systemd is pid 1 of every host, sshd is its
/// `ssh.service`, journald works, each host has its own machine id and its
/// own cgroup subtree; faults, status and heal work as for runit; the lab
/// keeps its init; `up` restarts a host whose systemd died; and `down`
/// leaves nothing, cgroups included, even after a host's systemd was killed
/// and the state file deleted.
#[test]
fn systemd_hosts_boot_systemd_with_sshd_as_a_unit_take_faults_restart_and_leave_nothing_behind() {
    let lab = TestLab::new("systemd");
    let summary = lab.ok(&["up", "2", "--init", "systemd"]);
    assert!(summary.contains("2 systemd hosts up"), "{summary}");
    let (key, hosts) = inventory(&lab);
    let known_hosts = lab.dir().join("test_known_hosts");
    let lines: String = hosts.values().map(|(a, k)| format!("{a} {k}\n")).collect();
    fs::write(&known_hosts, lines).unwrap();

    let mut machine_ids = Vec::new();
    for (name, (address, _)) in &hosts {
        let script = "cat /proc/1/comm; systemctl is-system-running; systemctl is-active ssh; \
                      ps -o comm= -p $(systemctl show --property=MainPID --value ssh); \
                      systemctl --failed --plain --no-legend | wc -l; \
                      journalctl -u ssh --no-pager | grep -c 'Server listening'; cat /etc/machine-id";
        let out = ssh_root(&known_hosts, &key, address, script);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let got: Vec<&str> = stdout.lines().collect();
        assert!(got.len() == 7, "{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(got[..5], ["systemd", "running", "active", "sshd", "0"], "{name}: {stdout}");
        assert_ne!(got[5], "0", "{name}: journald has no line from ssh.service");
        machine_ids.push(got[6].to_string());
        let cgroup = Path::new("/sys/fs/cgroup/systemd/drover-lab").join(&lab.name).join(name);
        if Path::new("/sys/fs/cgroup/systemd/drover-lab").exists() {
            assert!(cgroup.join("system.slice/ssh.service").is_dir(), "no delegated cgroup at {}", cgroup.display());
        }
    }
    assert_ne!(machine_ids[0], machine_ids[1], "hosts share a machine id");

    // The lab keeps its init.
    let out = lab.drover(&["up", "3", "--init", "runit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("runs systemd hosts") && err.contains("runit"), "{err}");

    // Faults: freeze stops systemd too, thaw resumes it; down and heal.
    let (h1, h2) = (&hosts["h1"].0, &hosts["h2"].0);
    lab.ok(&["fault", "h1", "freeze"]);
    lab.ok(&["fault", "h2", "down"]);
    assert!(banner(h1, Duration::from_secs(2)).is_err(), "a frozen host sent a banner");
    let status: serde_json::Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let states: Vec<&str> = status.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["frozen", "down"]);
    lab.ok(&["heal", "all"]);
    for h in [h1, h2] {
        banner(h, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{h} after heal: {e}"));
    }
    let out = ssh_root(&known_hosts, &key, h1, "systemctl is-system-running");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running", "systemd after thaw");

    // h2's systemd killed: the host is `stopped`, and `up` boots it again
    // (in the cgroup the dead one left).
    let h2_root = lab.dir().join("hosts/h2/merged");
    let kill_systemd = || {
        let systemd = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == h2_root)
                    && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd")
            })
            .expect("h2 runs systemd");
        Command::new("kill").args(["-9", &systemd.to_string()]).status().unwrap();
    };
    kill_systemd();
    let start = Instant::now();
    while !lab.ok(&["status"]).lines().any(|l| l.starts_with("h2 ") && l.contains("stopped")) {
        assert!(start.elapsed() < Duration::from_secs(5), "h2 not stopped: {}", lab.ok(&["status"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.ok(&["up", "2", "--init", "systemd"]).contains("(0 new)"));
    let out = ssh_root(&known_hosts, &key, h2, "systemctl is-system-running");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running", "systemd after a restart by up");

    // A crash: h2's systemd killed again, the state file gone. `down` still
    // finds and removes everything, the cgroups by the lab's name.
    kill_systemd();
    fs::remove_file(lab.dir().join("state.json")).unwrap();
    down_and_check_clean(&lab, &lab_index(h1), 2);
}
