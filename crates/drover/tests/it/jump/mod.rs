//! Jump hosts (#25) on lab hosts behind a bastion (`lab up --bastion`):
//! this machine has no route to the hosts, so every test here reaches them
//! only through the bastion, or through the bastion and a second hop.
//!
//! Sessions to a bastion are counted from its sshd's log (its console log:
//! the lab's sshd runs with `-e`), one "Accepted publickey" line per login.

mod bastion;
mod chain;
mod errors;
mod import;
mod lab;
mod reconnect;
mod scale;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_lab::LabHost;

use crate::support::{Fleet, Run};

/// Logins to lab host `h` so far, from its sshd's log.
pub fn logins(h: &LabHost) -> usize {
    let log = h.root.parent().expect("hosts/<name>/merged").join("console.log");
    std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains("Accepted publickey for")).count()
}

/// The controller (this namespace) has no route to `h`: the kernel says so,
/// and a connection fails at once rather than going anywhere.
pub fn assert_no_route(h: &LabHost) {
    let out = Command::new("ip").args(["route", "get", &h.address.to_string()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("No route to host"),
        "this machine has a route to {} ({}): {}{stderr}",
        h.name,
        h.address,
        String::from_utf8_lossy(&out.stdout)
    );
    let err = TcpStream::connect_timeout(&SocketAddr::from((h.address, 22)), Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "{}: {err}", h.name);
}

/// Run `args` inside lab host `h` (its namespace, chrooted in its root).
pub fn in_lab_host(h: &LabHost, args: &[&str]) -> Run {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &h.netns, "chroot"]).arg(&h.root).args(args).stdin(Stdio::null());
    Run::from(cmd.output().unwrap())
}

/// The bastion's address, as `proxy-jump` names it.
pub fn jump_of(f: &Fleet) -> String {
    format!("root@{}", f.bastion().address)
}
