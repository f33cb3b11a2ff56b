//! Keys, agents and inventories for the SSH tests: `ssh-keygen`,
//! `ssh-agent` and `ssh-add` as an operator runs them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{Fleet, Run};

/// A new key pair `dir/name` of `kind` (`ed25519`, `rsa`, `ecdsa`),
/// protected by `passphrase` when it is not empty.
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    key
}

pub fn public(key: &Path) -> String {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    std::fs::read_to_string(PathBuf::from(p)).unwrap().trim().to_string()
}

/// Root of host `i` accepts exactly these public keys.
pub fn authorize(f: &Fleet, i: usize, keys: &[&Path]) {
    let text: String = keys.iter().map(|k| format!("{}\n", public(k))).collect();
    std::fs::write(f.host_file(i, "/root/.ssh/authorized_keys"), text).unwrap();
}

/// Point the inventory's `[defaults] key` at `key`.
pub fn use_key(f: &Fleet, key: &Path) {
    let inv = f.project().join("inventory.toml");
    let text = std::fs::read_to_string(&inv).unwrap();
    let new: String = text
        .lines()
        .map(|l| {
            if l.starts_with("key = ") {
                format!("key = {:?}\n", key.display().to_string())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(text, new, "the inventory has a [defaults] key line");
    std::fs::write(inv, new).unwrap();
}

/// A running `ssh-agent` of this test's own, ended when dropped.
pub struct Agent {
    child: Child,
    pub sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(Stdio::null()).spawn().unwrap();
        crate::support::wait_until("ssh-agent socket", std::time::Duration::from_secs(10), || {
            sock.exists().then_some(())
        });
        Agent { child, sock, _dir: dir }
    }

    /// `ssh-add key`, answering its passphrase prompt with `passphrase`.
    pub fn add(&self, key: &Path, passphrase: &str) {
        let askpass = self._dir.path().join("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
        let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
        std::fs::set_permissions(&askpass, mode).unwrap();
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn env(&self) -> (&'static str, OsString) {
        ("SSH_AUTH_SOCK", self.sock.clone().into_os_string())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `drover exec all -- true` with `env`: did every host log in?
pub fn login(f: &Fleet, env: &[(&str, &std::ffi::OsStr)]) -> Run {
    f.drover_env(&["exec", "all", "--", "true"], env)
}

/// Both streams, for asserting on a message wherever it is printed.
pub fn said(r: &Run) -> String {
    format!("{}\n{}", r.stdout, r.stderr)
}
