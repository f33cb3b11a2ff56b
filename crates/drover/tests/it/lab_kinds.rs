//! Lab hosts of other kinds (#30 item 3): arm64 hosts under qemu-user
//! (`lab up --arch arm64`), a busybox-only userland (`--userland busybox`)
//! and a mixed lab (`--kinds runit,systemd,arm64-runit,openrc`), each
//! checked from inside, through a real SSH session with the host key
//! pinned: what a host says it is must be what a program on it finds.
//!
//! Needs root (the lab does) and qemu-user-static (`scripts/deps`); fails
//! loudly otherwise. The first run builds each kind's base (an arm64 one
//! takes several minutes under emulation; see docs/lab.md).

use std::fs;

use drover_lab::{Arch, Init, Kind, Userland};

use crate::support::lab::{ssh_root, TestLab};
use crate::support::Fleet;

/// Run `command` as root on host `i` over SSH (the lab key, the host key
/// pinned) and return its trimmed stdout; panics if it fails.
fn ssh(f: &Fleet, i: usize, command: &str) -> String {
    let lab = drover_lab::Lab::open(f.lab_name()).unwrap();
    let h = &f.lab_hosts()[i];
    let known_hosts = f.project().join("test_known_hosts");
    fs::write(&known_hosts, format!("{} {}\n", h.address, h.host_key)).unwrap();
    let out = ssh_root(&known_hosts, &lab.key_path(), &h.address.to_string(), command);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "ssh {}: {command}\n{stdout}\n{}", h.name, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// `lab status --json`: each host's kind as recorded.
fn status_kinds(f: &Fleet) -> Vec<Kind> {
    let r = f.lab(&["status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    rows.iter().map(|row| serde_json::from_value(row["kind"].clone()).unwrap()).collect()
}

/// The machine word of an ELF file on the host (`b7 00` is aarch64,
/// `3e 00` x86-64), read with `od` by the host's own shell.
const ELF_MACHINE: &str = "od -An -tx1 -j18 -N2";

/// The command lines of host `i`'s processes, as the controller sees them.
fn process_cmdlines(f: &Fleet, i: usize) -> Vec<String> {
    let out = std::process::Command::new("ip").args(["netns", "pids", &f.lab_hosts()[i].netns]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_string())
        .collect()
}

/// An arm64 host is aarch64 all through: the SSH session's `uname -m`,
/// sshd's and runit's binaries, and its supervisor and sshd running under
/// qemu-user (the controller sees qemu's binfmt interpreter in their
/// command lines); `lab status` records the architecture.
#[test]
fn arm64_hosts_run_aarch64_sshd_runit_and_shell_under_qemu() {
    let kind = Kind::runit().with_arch(Arch::Arm64);
    let f = Fleet::up_kind("kind", 1, kind);
    assert_eq!(f.kind(0), kind);
    assert_eq!(status_kinds(&f), [kind]);
    let out = ssh(&f, 0, &format!("uname -m; {ELF_MACHINE} /usr/sbin/sshd; {ELF_MACHINE} /usr/bin/runsvdir"));
    assert_eq!(out.lines().map(str::trim).collect::<Vec<_>>(), ["aarch64", "b7 00", "b7 00"], "{out}");
    let procs = process_cmdlines(&f, 0);
    for program in ["runsvdir", "sshd"] {
        assert!(
            procs.iter().any(|c| c.contains("aarch64-binfmt") && c.contains(program)),
            "{program} does not run under qemu-aarch64: {procs:#?}"
        );
    }
}

/// OpenRC runs under emulation too: an arm64 OpenRC host's pid 1 is
/// `openrc-init` under qemu-aarch64, its `default` runlevel started sshd
/// (under supervise-daemon, emulated as well), nothing failed, and the
/// SSH session is aarch64.
///
/// Not in the default suite: its base is a second arm64 debootstrap under
/// emulation (about 6 minutes on a clean machine) for a combination the
/// issue does not ask the core scenarios of (arm64 runs them on runit,
/// OpenRC on amd64). `cargo test ... -- --ignored lab_kinds::` runs it.
#[test]
#[ignore = "builds a second emulated arm64 base (~6 min); run with --ignored"]
fn arm64_openrc_hosts_boot_openrc_init_under_qemu() {
    let kind = Kind::native(Init::OpenRc).with_arch(Arch::Arm64);
    let f = Fleet::up_kind("kind", 1, kind);
    assert_eq!(status_kinds(&f), [kind]);
    let out =
        ssh(&f, 0, "uname -m; cat /proc/1/comm; echo $(cat /run/openrc/softlevel); ls /run/openrc/failed | wc -l");
    assert_eq!(out.lines().map(str::trim).collect::<Vec<_>>(), ["aarch64", "openrc-init", "default", "0"], "{out}");
    let procs = process_cmdlines(&f, 0);
    for program in ["/sbin/openrc-init", "supervise-daemon sshd", "/usr/sbin/sshd"] {
        assert!(
            procs.iter().any(|c| c.contains("aarch64-binfmt") && c.contains(program)),
            "{program} does not run under qemu-aarch64: {procs:#?}"
        );
    }
}

/// A busybox host has Alpine's minimal userland: `/bin/sh` is busybox
/// (and so is the login shell SSH runs), `cat` is a busybox applet, there
/// is no bash, dash or coreutils package; sshd and runit still serve it.
#[test]
fn busybox_hosts_have_busybox_sh_and_applets_and_no_bash() {
    let kind = Kind::runit().with_userland(Userland::Busybox);
    let f = Fleet::up_kind("kind", 1, kind);
    assert_eq!(status_kinds(&f), [kind]);
    let out = ssh(
        &f,
        0,
        "readlink /bin/sh; readlink -f /bin/sh; readlink -f $(which cat); readlink /proc/$$/exe; \
         command -v bash || echo no-bash; command -v dash || echo no-dash; \
         dpkg-query -W -f '${db:Status-Status}\\n' coreutils 2>/dev/null || echo not-installed; cat /proc/1/comm",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "busybox",
            "/usr/bin/busybox",
            "/usr/bin/busybox",
            "/usr/bin/busybox",
            "no-bash",
            "no-dash",
            "not-installed",
            "runsvdir"
        ],
        "{out}"
    );
}

/// One `lab up` makes a lab of four kinds: each host is its own kind
/// (its pid 1 and its architecture, seen through SSH), all in one
/// inventory and on one bridge (h1 reaches h3's sshd directly); a host
/// keeps its kind (`up` asking another is refused, naming it), and
/// `--kinds` must name one kind per host.
#[test]
fn a_mixed_lab_runs_each_host_its_own_kind_on_one_bridge() {
    let kinds =
        [Kind::runit(), Kind::native(Init::Systemd), Kind::runit().with_arch(Arch::Arm64), Kind::native(Init::OpenRc)];
    let f = Fleet::mixed("kinds-mixed", &kinds);
    assert_eq!(status_kinds(&f), kinds);
    let inventory: toml::Table =
        toml::from_str(&fs::read_to_string(f.project().join("inventory.toml")).unwrap()).unwrap();
    assert_eq!(inventory["hosts"].as_table().unwrap().len(), 4);
    let expected = [("x86_64", "runsvdir"), ("x86_64", "systemd"), ("aarch64", "runsvdir"), ("x86_64", "openrc-init")];
    for (i, (machine, init)) in expected.iter().enumerate() {
        let out = ssh(&f, i, &format!("uname -m; {ELF_MACHINE} $(command -v {init})"));
        let word = if *machine == "aarch64" { "b7 00" } else { "3e 00" };
        assert_eq!(out.lines().map(str::trim).collect::<Vec<_>>(), [*machine, word], "h{}: {out}", i + 1);
        let pid1 = process_cmdlines(&f, i);
        assert!(pid1.iter().any(|c| c.contains(init)), "h{}: no {init} among {pid1:#?}", i + 1);
    }
    let h3 = f.lab_hosts()[2].address;
    let banner = ssh(
        &f,
        0,
        &format!("python3 -c \"import socket; print(socket.create_connection(('{h3}', 22), 5).recv(8).decode())\""),
    );
    assert_eq!(banner, "SSH-2.0-", "h1 reaches h3 on the lab bridge");
    let again = f.lab(&["up", "4"]);
    assert!(again.code != 0 && again.stderr.contains("runs systemd hosts (h2 is one)"), "{}", again.stderr);
    let short = f.lab(&["up", "4", "--kinds", "runit,systemd"]);
    assert!(short.code != 0 && short.stderr.contains("names 2 kind(s) for 4 host(s)"), "{}", short.stderr);
    let same = f.lab(&["up", "4", "--kinds", "runit,systemd,arm64-runit,openrc"]);
    assert!(same.code == 0 && same.stdout.contains("(0 new)"), "{}{}", same.stdout, same.stderr);
}

/// Kinds this machine cannot run are refused before anything is made:
/// systemd under qemu-user (exit 3, saying what to use instead), and a kind
/// that does not parse (a usage error naming the syntax).
#[test]
fn lab_up_refuses_systemd_under_emulation_and_bad_kinds() {
    let lab = TestLab::new("kind-refusals");
    let out = lab.drover(&["up", "1", "--arch", "arm64", "--init", "systemd"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("arm64-systemd") && err.contains("qemu-user") && err.contains("--init runit"), "{err}");
    assert!(!lab.dir().join("state.json").exists(), "nothing made");
    let out = lab.drover(&["up", "2", "--kinds", "runit,arm64-alpine-runit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("[ARCH-][busybox-]INIT"), "{err}");
}
