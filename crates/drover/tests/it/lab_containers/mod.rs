//! Lab hosts that can run containers (#29 item 5): `Fleet::containers`
//! (`lab up N --kinds INIT+containers`). Each test drives a host as a user
//! would, over SSH with the host key pinned: it installs a runtime from
//! the controller's Debian packages (the hosts have none), runs a
//! container that answers on a TCP port of the host and writes to a
//! bind-mounted directory, stops it, and checks that `lab down` leaves
//! nothing behind (mounts, cgroups, namespaces, processes, the store).
//!
//! Needs root, network access to the controller's apt mirror for the
//! first run (packages are cached under /var/cache/drover-lab/test-debs),
//! and `busybox-static` on the controller (`scripts/deps --test`): its
//! static busybox is the containers' whole root file system.

mod docker;
mod docker_registry;
mod engine;

mod pull_bytes;
mod refusals;
mod runc;
mod systemd;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::lab::{leftovers, ssh_root, state_root};
use crate::support::Fleet;

/// The controller's static busybox (package busybox-static).
const BUSYBOX: &str = "/usr/bin/busybox";

/// The lab key and a known_hosts file pinning host `i`'s key.
fn ssh_files(f: &Fleet, i: usize) -> (PathBuf, PathBuf) {
    let lab = drover_lab::Lab::open(f.lab_name()).unwrap();
    let h = &f.lab_hosts()[i];
    let known_hosts = f.project().join(format!("known_hosts_{i}"));
    fs::write(&known_hosts, format!("{} {}\n", h.address, h.host_key)).unwrap();
    (lab.key_path(), known_hosts)
}

/// Run `command` as root on host `i` over SSH; its stdout, trimmed, and
/// whether it succeeded.
fn ssh_try(f: &Fleet, i: usize, command: &str) -> (bool, String, String) {
    let (key, known_hosts) = ssh_files(f, i);
    let out = ssh_root(&known_hosts, &key, &f.lab_hosts()[i].address.to_string(), command);
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The same, which must succeed.
fn ssh(f: &Fleet, i: usize, command: &str) -> String {
    let (ok, stdout, stderr) = ssh_try(f, i, command);
    assert!(ok, "ssh h{}: {command}\n{stdout}\n{stderr}", i + 1);
    stdout
}

/// Copy local `files` into directory `dir` on host `i` with scp.
fn scp(f: &Fleet, i: usize, files: &[PathBuf], dir: &str) {
    let (key, known_hosts) = ssh_files(f, i);
    ssh(f, i, &format!("mkdir -p {dir}"));
    let out = Command::new("scp")
        .args(["-q", "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(key)
        .args(files)
        .arg(format!("root@{}:{dir}/", f.lab_hosts()[i].address))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "scp to h{}: {}", i + 1, String::from_utf8_lossy(&out.stderr));
}

/// The .deb files host `i` lacks to install `packages`: apt on the
/// controller resolves them against the host's own dpkg database and
/// downloads them (cached per init and package set; `apt-get update` once
/// if the controller's lists do not know a package yet).
fn debs_for(f: &Fleet, i: usize, packages: &[&str]) -> Vec<PathBuf> {
    // One apt at a time in this process: `apt-get update` takes a lock, and
    // a second one at the same moment would fail instead of waiting.
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new("/var/cache/drover-lab/test-debs").join(format!("{}-{}", f.kind(i), packages.join("-")));
    fs::create_dir_all(cache.join("partial")).unwrap();
    let download = || {
        Command::new("apt-get")
            // No locks: apt would lock the host's dpkg database (beside the
            // status file it is given), which is not its to lock (it failed
            // so once, ENOENT on the host's lock-frontend); the archives
            // directory is this test's own, and APT keeps us one at a time.
            .args([
                "install",
                "--download-only",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "Debug::NoLocking=1",
                "-o",
            ])
            .arg(format!("Dir::State::status={}", f.host_file(i, "/var/lib/dpkg/status").display()))
            .arg("-o")
            .arg(format!("Dir::Cache::archives={}", cache.display()))
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut out = download();
    if !out.status.success() {
        let update = Command::new("apt-get").args(["update", "-q"]).stdin(Stdio::null()).output().unwrap();
        assert!(update.status.success(), "apt-get update: {}", String::from_utf8_lossy(&update.stderr));
        out = download();
    }
    assert!(out.status.success(), "apt-get download of {packages:?}: {}", String::from_utf8_lossy(&out.stderr));
    // Drop what the mirror no longer has (a version a point release
    // replaced), so the directory holds one version of each package.
    let clean = Command::new("apt-get")
        .args(["autoclean", "-q", "-o", "Debug::NoLocking=1", "-o"])
        .arg(format!("Dir::Cache::archives={}", cache.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(clean.status.success(), "apt-get autoclean: {}", String::from_utf8_lossy(&clean.stderr));
    let mut debs: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert!(!debs.is_empty(), "no .deb for {packages:?} in {}", cache.display());
    debs
}

/// Install `packages` on host `i` from the controller's packages, as an
/// operator of an offline host would: copy the .debs over, `dpkg -i`
/// them. Services the packages would start (dockerd) are held back by a
/// `policy-rc.d`: the test starts them with the options it needs.
fn install(f: &Fleet, i: usize, packages: &[&str]) {
    let debs = debs_for(f, i, packages);
    ssh(f, i, "rm -rf /root/debs");
    scp(f, i, &debs, "/root/debs");
    ssh(
        f,
        i,
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && \
         DEBIAN_FRONTEND=noninteractive dpkg -i --force-unsafe-io /root/debs/*.deb >/root/dpkg.log 2>&1 || { tail -20 /root/dpkg.log; exit 1; }",
    );
}

/// An HTTP/1.0 GET of `path` from port `port` of host `i`, as the
/// controller sees it: the body, or why not.
fn http_get(f: &Fleet, i: usize, port: u16, path: &str) -> Result<String, String> {
    let addr = SocketAddr::from((f.lab_hosts()[i].address, port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let (head, body) = reply.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP reply: {reply:?}"))?;
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_string())
    } else {
        Err(head.lines().next().unwrap_or_default().to_string())
    }
}

/// Wait (20 s at most) until port `port` of host `i` serves `path`.
fn wait_http(f: &Fleet, i: usize, port: u16, path: &str) -> String {
    let start = Instant::now();
    loop {
        match http_get(f, i, port, path) {
            Ok(body) => return body,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("port {port} of h{} never answered: {e}", i + 1)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A rootfs with the controller's static busybox as `/bin/busybox` (and
/// `/bin/sh`), an `/www/index.html` saying `greeting`, and the empty
/// directories a runtime mounts over; made in `dir`.
fn busybox_rootfs(dir: &Path, greeting: &str) {
    for d in ["bin", "www", "data", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, dir.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("{BUSYBOX} (apt-get install busybox-static): {e}"));
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    fs::write(dir.join("www/index.html"), greeting).unwrap();
}

/// `lab down` (while containers may still run), then nothing of the lab
/// may be left: no namespace, link, mount (the store's bind mounts
/// included), process, cgroup in any hierarchy (the containers' nested
/// ones included) or directory (the store included).
fn down_leaves_nothing(f: &Fleet) {
    let idx = f.lab_hosts()[0].address.octets()[2].to_string();
    let inodes: Vec<u64> = f
        .lab_hosts()
        .iter()
        .filter_map(|h| fs::metadata(format!("/run/netns/{}", h.netns)).ok())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .collect();
    let down = f.lab(&["down"]);
    assert_eq!(down.code, 0, "lab down: {}\n{}", down.stdout, down.stderr);
    let left = leftovers(&state_root().join(f.lab_name()), &idx, &inodes);
    assert!(left.is_empty(), "lab {} left behind: {left:#?}", f.lab_name());
}
