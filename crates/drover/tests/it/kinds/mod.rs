//! The end-to-end suite's core scenarios on every kind of host #30 asks
//! for (an arm64 host under qemu-user, a busybox-only userland, an OpenRC
//! host; `openrc/` covers what is OpenRC's own), each through the real `drover` binary,
//! the agent built for the host's machine and the host's own tools; and
//! one project applied to a fleet of five kinds at once.
//!
//! Needs root (the lab does) and, for arm64 hosts, qemu-user-static and an
//! aarch64 agent in the controller (`scripts/test` builds both in).

mod core;
mod mixed;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use drover_lab::{Arch, Init, Kind, Userland};

use crate::support::Fleet;
use core::{core_scenarios, EMULATED, NATIVE};

/// Top-level keys go before the file's first table.
fn prepend(path: &Path, text: &str) {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, format!("{text}{s}")).unwrap();
}

/// An HTTP GET's body, or `None` while nothing answers (a host booting).
fn get(url: &str) -> Option<String> {
    let hostport = url.strip_prefix("http://")?.split('/').next()?;
    let mut s = std::net::TcpStream::connect_timeout(&hostport.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(body))
}

/// The ELF machine of the agent the host runs now, read on the host by its
/// own shell: what `uname -m` says the host is.
fn agent_machine(f: &Fleet, i: usize) -> String {
    // The bootstrap keeps one agent there, named by its content hash.
    let word = f.host_sh(i, "od -An -tx1 -j18 -N2 /var/lib/drover/agent/agent-* | tr -d ' \\n'");
    match word.as_str() {
        "b700" => "aarch64".into(),
        "3e00" => "x86_64".into(),
        other => format!("unknown ELF machine {other}"),
    }
}

/// Apply, restart-on-change, logs, packages, the health gate, drain, magic
/// rollback and a reboot rolled back, on an arm64 host (under emulation).
#[test]
fn core_scenarios_pass_on_an_arm64_host() {
    let f = Fleet::up_kind("core", 1, Kind::runit().with_arch(Arch::Arm64));
    core_scenarios(&f, 0, &EMULATED);
    assert_eq!(f.host_sh(0, "uname -m"), "aarch64");
    assert_eq!(agent_machine(&f, 0), "aarch64", "the host runs an agent of another machine");
}

/// The same on a host whose only userland is busybox: ash as `/bin/sh`,
/// applets for coreutils, no bash.
#[test]
fn core_scenarios_pass_on_a_busybox_userland_host() {
    let f = Fleet::up_kind("core", 1, Kind::runit().with_userland(Userland::Busybox));
    assert_eq!(f.host_sh(0, "basename $(readlink -f /bin/sh); command -v bash || echo no-bash"), "busybox\nno-bash");
    core_scenarios(&f, 0, &NATIVE);
}

/// The same on an OpenRC host (beside `openrc::`, which covers what is
/// OpenRC's own: runlevels, reload by SIGHUP, supervise-daemon's crash loop).
#[test]
fn core_scenarios_pass_on_an_openrc_host() {
    let f = Fleet::up_kind("core", 1, Kind::native(Init::OpenRc));
    core_scenarios(&f, 0, &NATIVE);
}
