//! The agent runs as root, so nothing another user can write may become what
//! runs (#11 item 2). Driven against lab hosts, with the unprivileged lab
//! user `op` as the attacker, logged in over SSH with its own password.
//!
//! Needs root (the lab does).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::support::Fleet;
use drover::agent_bin;
use drover::transport::bootstrap;

/// Runs as root, it leaves `/root/pwned`; run as `op`, `/tmp/pwned-<uid>`.
const EVIL: &str = "#!/bin/sh\ntouch /root/pwned 2>/dev/null\ntouch /tmp/pwned-$(id -u)\nexit 0\n";

/// An SSH session as `op` on host `i` (password from `lab inventory --csv`).
struct Op {
    rt: tokio::runtime::Runtime,
    session: drover_ssh::Session,
    password: String,
}

impl Op {
    fn login(f: &Fleet, i: usize) -> Op {
        let csv = f.lab(&["inventory", "--csv"]);
        let line = csv.stdout.lines().nth(i).expect("a csv line per host").to_string();
        let fields: Vec<&str> = line.splitn(3, ',').collect();
        let (address, user, password) = (fields[0], fields[1], fields[2].to_string());
        assert_eq!(user, "op");
        let target = drover_ssh::Target {
            address: address.into(),
            port: 22,
            user: user.into(),
            auth: drover_ssh::Auth { password: Some(drover_ssh::Secret::new(password.clone())), ..Default::default() },
            host_keys: vec![f.lab_hosts()[i].host_key.clone()],
            cert_authorities: vec![],
            cert_names: vec![],
            timeouts: Default::default(),
            proxy_jump: Vec::new(),
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let session = rt.block_on(drover_ssh::Session::connect(&target)).expect("login as op");
        Op { rt, session, password }
    }

    /// Run a shell command as `op`; (exit code, stdout + stderr).
    fn sh(&self, cmd: &str) -> (Option<u32>, String) {
        let out = self.rt.block_on(self.session.run(cmd, b"")).unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.code, text)
    }
}

/// A lab of one host whose inventory logs in as `op` by password, with sudo.
fn op_fleet(name: &str) -> Fleet {
    let f = Fleet::new(name, 1);
    fs::remove_file(f.project().join("inventory.toml")).unwrap();
    let csv = f.lab(&["inventory", "--csv"]);
    fs::write(f.project().join("inventory.csv"), &csv.stdout).unwrap();
    let t = f.drover(&["trust"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    f
}

fn installed(f: &Fleet) -> std::path::PathBuf {
    f.host_file(0, &bootstrap::agent_path())
}

/// The agent is installed root-owned 0700 in a root-owned 0700 directory,
/// byte for byte the embedded one.
fn assert_installed(f: &Fleet) {
    let path = installed(f);
    let dir = fs::symlink_metadata(path.parent().unwrap()).unwrap();
    assert!(dir.is_dir() && dir.uid() == 0 && dir.permissions().mode() & 0o7777 == 0o700, "{dir:?}");
    let md = fs::symlink_metadata(&path).unwrap();
    assert!(md.is_file() && md.uid() == 0 && md.permissions().mode() & 0o7777 == 0o700, "{md:?}");
    assert!(fs::read(&path).unwrap() == agent_bin::bytes(), "the installed agent is not the embedded one");
}

/// The root-only record that the installed file passed its sha256 check
/// (`.ok-<blake3>`: device, inode, size, mtime, ctime) names that very file,
/// so the next start hashes it only if it changed.
fn assert_checked_stamp(f: &Fleet) {
    let path = installed(f);
    let stamp = path.with_file_name(format!(".ok-{}", agent_bin::hash().to_hex()));
    let text = fs::read_to_string(&stamp).unwrap_or_else(|e| panic!("{}: {e}", stamp.display()));
    let md = fs::symlink_metadata(&path).unwrap();
    let fields: Vec<&str> = text.trim().split('.').collect();
    assert_eq!(fields.get(1..3), Some(&[&*md.ino().to_string(), &*md.size().to_string()][..]), "{text}");
}

fn assert_not_pwned(f: &Fleet) {
    assert!(!f.host_file(0, "/root/pwned").exists(), "a planted agent ran as root");
    let tmp: Vec<_> = fs::read_dir(f.host_file(0, "/tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pwned-"))
        .collect();
    assert!(tmp.is_empty(), "a planted agent ran: {tmp:?}");
}

/// `op` plants its own script everywhere it can write that an agent could
/// be taken from (the old per-user cache, its temporary names), and keeps
/// overwriting every upload in flight: no apply runs it, as root or at all;
/// drover installs the real agent, refusing an upload that was swapped.
#[test]
fn op_cannot_swap_the_agent_that_runs_as_root() {
    let f = op_fleet("agentswap-op");
    let op = Op::login(&f, 0);
    let hex = agent_bin::hash().to_hex();
    let plant = format!(
        "umask 022; mkdir -p .cache/drover && printf '%s' '{EVIL}' > evil && chmod 755 evil && \
         for p in .cache/drover/agent-{hex} .cache/drover/agent-{hex}.tmp /tmp/drover-agent.{hex}; do cp evil $p; done"
    );
    assert_eq!(op.sh(&plant).0, Some(0));
    // While the first apply uploads, `op` overwrites every upload it finds.
    let (code, pid) = op.sh(
        "nohup sh -c 'while :; do for t in /tmp/drover-agent.*; do [ -f \"$t\" ] && cp evil \"$t\" 2>/dev/null; done; done' \
         >/dev/null 2>&1 & echo $!",
    );
    assert_eq!(code, Some(0));
    let first = f.apply_json(&[]);
    eprintln!("first apply while op overwrites uploads: {}", first.hosts()[0]);
    assert_eq!(op.sh(&format!("kill {}", pid.trim())).0, Some(0));
    assert_not_pwned(&f);
    let h = &first.hosts()[0];
    match h["outcome"].as_str() {
        // The root-owned copy was taken before op's loop overwrote the upload.
        Some("changed") => {}
        Some("failed") => {
            let err = h["error"].as_str().unwrap();
            assert!(err.contains("does not have sha256") && err.contains("not installed"), "{err}");
            assert!(!installed(&f).exists(), "a refused upload was installed");
        }
        other => panic!("unexpected outcome {other:?}: {h}"),
    }
    let again = f.apply_json(&[]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_not_pwned(&f);
    assert_installed(&f);
    assert!(!f.host_file(0, &format!("/home/op/.cache/drover/agent-{hex}")).exists(), "old cache not cleaned");

    // Nothing of the installed agent is reachable for op.
    let path = bootstrap::agent_path();
    for cmd in [format!("cat {path}"), format!(": > {path}"), format!("ls {}", bootstrap::AGENT_DIR)] {
        let (code, out) = op.sh(&format!("{cmd} >/dev/null"));
        assert_ne!(code, Some(0), "op could `{cmd}`");
        assert!(out.contains("Permission denied"), "{cmd}: {out}");
    }

    // An upload swapped between the upload and the install (deterministic
    // here: op hands over its own script) is refused, and the installed
    // agent stays as it was.
    assert_eq!(op.sh("cp evil /tmp/drover-agent.swapped").0, Some(0));
    let res = op.rt.block_on(bootstrap::install_from(
        &op.session,
        agent_bin::native(),
        "op",
        Some(&op.password),
        "/tmp/drover-agent.swapped",
        Duration::from_secs(60),
    ));
    let err = res.expect_err("a swapped upload was installed").to_string();
    assert!(err.contains("does not have sha256") && err.contains("not installed"), "{err}");
    assert!(!f.host_file(0, "/tmp/drover-agent.swapped").exists(), "the upload is removed either way");
    assert_not_pwned(&f);
    assert_installed(&f);
    let mut dir: Vec<String> = fs::read_dir(installed(&f).parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dir.sort();
    let hex = agent_bin::hash().to_hex();
    assert_eq!(dir, [format!(".ok-{hex}"), format!("agent-{hex}")], "only the agent and its check record");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.hosts()[0]["outcome"], "unchanged");
}

/// Root's own copy changed under drover (disk corruption, a careless
/// admin): it is detected before it runs and replaced, and the run goes on.
#[test]
fn a_corrupted_root_owned_agent_is_replaced_not_run() {
    let f = Fleet::new("agentswap-root", 1);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_installed(&f);
    assert_checked_stamp(&f);
    let path = installed(&f);

    // An agent of another drover version goes when this one is reinstalled.
    let other = path.with_file_name(format!("agent-{}", "0".repeat(64)));
    fs::write(&other, "old").unwrap();

    // Different content, same owner and mode. (Written beside and renamed:
    // a watchdog may still be running the old file, which Linux will not
    // let anyone open for writing.)
    let tmp = path.with_extension("corrupt");
    fs::write(&tmp, EVIL).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).unwrap();
    fs::rename(&tmp, &path).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hosts()[0]["outcome"], "unchanged", "{}", r.stdout);
    assert!(r.stderr.contains("failed its check") && r.stderr.contains("replaced"), "{}", r.stderr);
    assert_not_pwned(&f);
    assert_installed(&f);
    assert_checked_stamp(&f);
    assert!(!other.exists(), "another version's agent was kept");

    // Right content, but writable by others, or owned by op: not run either.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("failed its check"), "{}", r.stderr);
    assert_installed(&f);
    let passwd = fs::read_to_string(f.host_file(0, "/etc/passwd")).unwrap();
    let uid: u32 =
        passwd.lines().find_map(|l| l.strip_prefix("op:x:")).and_then(|r| r.split(':').next()?.parse().ok()).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("failed its check"), "{}", r.stderr);
    assert_installed(&f);
}

/// The magic-rollback watchdog, which outlives the session and reverts as
/// root, is the very agent file that was checked (same inode), not a path
/// looked up again. Held at `awaiting-confirm` by the agent's test hook.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn the_watchdog_runs_the_checked_agent() {
    let f = Fleet::new("agentswap-wd", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    fs::write(f.host_file(0, "/var/lib/drover/test-hook"), "awaiting-confirm").unwrap();
    fs::write(f.project().join("layers/site/srv/site/index.html.j2"), "generation {{ generation }}\n").unwrap();
    let mut apply = f.spawn_drover(&["apply", "--confirm-timeout", "120s"]);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = std::time::Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "the agent never reached awaiting-confirm");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids = std::process::Command::new("ip").args(["netns", "pids", &f.lab_hosts()[0].netns]).output().unwrap();
    let watchdog = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .find(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.split(|b| *b == 0).nth(1) == Some(b"watchdog".as_slice())
        })
        .expect("a watchdog process");
    let cmd = fs::read(format!("/proc/{watchdog}/cmdline")).unwrap();
    let argv0 = String::from_utf8_lossy(cmd.split(|b| *b == 0).next().unwrap()).to_string();
    let exe = fs::metadata(format!("/proc/{watchdog}/exe")).unwrap();
    let checked = fs::metadata(installed(&f)).unwrap();
    let _ = std::process::Command::new("kill").args(["-9", &watchdog]).status();
    let _ = fs::remove_file(f.host_file(0, "/var/lib/drover/test-hook"));
    f.kill_agent(0);
    let _ = apply.kill();
    let _ = apply.wait();
    assert_eq!(argv0, bootstrap::agent_path());
    assert_eq!((exe.dev(), exe.ino()), (checked.dev(), checked.ino()), "the watchdog runs another file");
}
