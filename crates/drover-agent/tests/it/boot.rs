//! Magic rollback across a reboot, at the agent: the real binary's `boot`
//! verb (what the boot-time hook runs) and its watchdog, against a temporary
//! target root. Every agent here runs `--simulated`, so the reboot it would
//! do is refused (and reported): the test machine is never rebooted. The
//! reboot itself, and the hook run by a real init, are tested on lab hosts
//! (`crates/drover/tests/reboot.rs`).
//!
//! A generation marked for a reboot is what `Reboot` leaves; a simulated
//! agent refuses `Reboot`, so the tests write the mark into `pending.json`
//! as `Reboot` would.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, Request, Response};

use crate::support::files::files;
use crate::support::Agent;

const AGENT: &str = env!("CARGO_BIN_EXE_drover-agent");

fn agent(root: &Path) -> Agent {
    Agent::spawn(root, &["--simulated"], b"", 0)
}

/// One file `/etc/kernel-ish` with `content`, activated as the next
/// generation.
fn apply(a: &mut Agent, content: &'static str, confirm_ms: u64) {
    let r = a.apply(&files(&[("/etc/kernel-ish", content)]), confirm_ms);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { .. })), "{r:?}");
}

fn state_file(root: &Path, name: &str) -> std::path::PathBuf {
    root.join("var/lib/drover").join(name)
}

fn json(root: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(state_file(root, name)).unwrap()).unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Generation 1 confirmed, generation 2 pending, marked for a reboot with
/// `confirm_ms` after the boot and `boots` boots so far; its deadline far
/// ahead (as `Reboot` sets it, to cover the shutdown).
fn pending_reboot(confirm_ms: u64, boots: u32) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let mut a = agent(d.path());
    apply(&mut a, "v1", 0);
    apply(&mut a, "v2", 600_000);
    a.bye();
    let mut p = json(d.path(), "pending.json");
    p["deadline_ms"] = serde_json::json!(now_ms() + 600_000);
    p["reboot"] = serde_json::json!({ "confirm_ms": confirm_ms, "boots": boots });
    fs::write(state_file(d.path(), "pending.json"), serde_json::to_vec(&p).unwrap()).unwrap();
    d
}

fn boot(root: &Path) -> String {
    let out = Command::new(AGENT).args(["boot", "--simulated", "--root"]).arg(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn content(root: &Path) -> String {
    fs::read_to_string(root.join("etc/kernel-ish")).unwrap()
}

/// Wait until the watchdog put v1 back; how long it took.
fn wait_reverted(root: &Path, within: Duration) -> Duration {
    let start = Instant::now();
    while content(root) != "v1" || state_file(root, "pending.json").exists() {
        assert!(start.elapsed() < within, "not reverted within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The report is written right after the revert.
    while !state_file(root, "watchdog-report.json").exists() || !state_file(root, "reboot-guard.json").exists() {
        assert!(start.elapsed() < within, "no watchdog report within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    start.elapsed()
}

/// The first boot into a marked generation gives the controller a fresh
/// `confirm_ms` from the boot (not the old deadline), counts the boot, and
/// re-arms the watchdog; unconfirmed, the watchdog reverts at the new
/// deadline, records the reboot it is about to do (the guard), and here,
/// simulated, reports that the reboot was refused.
#[test]
fn boot_rearms_a_fresh_deadline_and_the_watchdog_reverts_then_reboots_once() {
    let d = pending_reboot(1500, 0);
    let before = now_ms();
    let said = boot(d.path());
    assert!(said.contains("generation 2 awaits confirmation for 1500 ms"), "{said}");
    let p = json(d.path(), "pending.json");
    let deadline = p["deadline_ms"].as_u64().unwrap();
    assert!(deadline >= before + 1500 && deadline < before + 10_000, "deadline not renewed from the boot: {p}");
    assert_eq!(p["reboot"]["boots"], 1, "{p}");
    assert_eq!(json(d.path(), "boot.json")["boots"], 1);
    assert_eq!(content(d.path()), "v2", "reverted before the deadline");
    let took = wait_reverted(d.path(), Duration::from_secs(15));
    assert!(took >= Duration::from_millis(1000), "reverted too early ({took:?})");
    let guard = json(d.path(), "reboot-guard.json");
    assert_eq!(guard["generation"], 2, "{guard}");
    let report = json(d.path(), "watchdog-report.json");
    let recovered = report["recovered"].as_str().unwrap();
    assert!(recovered.contains("generation 2 reverted to 1"), "{recovered}");
    assert!(recovered.contains("rebooting once"), "{recovered}");
    assert!(recovered.contains("but the reboot failed") && recovered.contains("simulated"), "{recovered}");
    // The next session reports it, on generation 1.
    let a = agent(d.path());
    assert_eq!((a.state.current, a.state.pending_confirm, a.state.boots), (Some(1), None, 1));
    assert!(a.state.recovered.as_deref().unwrap_or("").contains("rebooting once"), "{:?}", a.state.recovered);
    a.bye();
}

/// Booting a second time into a marked generation that was never
/// confirmed (the generation itself rebooted the host, or it hung): no new
/// deadline, the watchdog reverts at once.
#[test]
fn second_boot_before_confirmation_reverts_at_once() {
    let d = pending_reboot(600_000, 1);
    let said = boot(d.path());
    assert!(said.contains("booted again before it was confirmed"), "{said}");
    let took = wait_reverted(d.path(), Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "not at once: {took:?}");
    assert_eq!(json(d.path(), "reboot-guard.json")["generation"], 2);
}

/// The boot-loop guard: after a revert for which the agent already rebooted
/// once, it does not reboot again; the report says so.
#[test]
fn no_second_reboot_for_the_same_generation() {
    let d = pending_reboot(300, 0);
    let guard = serde_json::json!({ "generation": 2, "reason": "earlier", "at_ms": 1 });
    fs::write(state_file(d.path(), "reboot-guard.json"), serde_json::to_vec(&guard).unwrap()).unwrap();
    boot(d.path());
    wait_reverted(d.path(), Duration::from_secs(10));
    let recovered = json(d.path(), "watchdog-report.json")["recovered"].as_str().unwrap().to_string();
    assert!(recovered.contains("not rebooting again: already rebooted once"), "{recovered}");
    assert!(!recovered.contains("reboot failed"), "it tried to reboot: {recovered}");
}

/// A boot with nothing pending only counts itself; a generation pending
/// without a reboot mark keeps its deadline (the watchdog is re-armed).
#[test]
fn boot_counts_and_leaves_an_unmarked_pending_generation_its_deadline() {
    let d = tempfile::tempdir().unwrap();
    assert!(boot(d.path()).contains("boot 1: nothing pending"));
    let mut a = agent(d.path());
    assert_eq!(a.state.boots, 1);
    apply(&mut a, "v1", 0);
    apply(&mut a, "v2", 1200);
    a.bye();
    let deadline = json(d.path(), "pending.json")["deadline_ms"].clone();
    assert!(boot(d.path()).contains("deadline kept"));
    assert_eq!(json(d.path(), "pending.json")["deadline_ms"], deadline);
    assert_eq!(json(d.path(), "boot.json")["boots"], 2);
    let start = Instant::now();
    while content(d.path()) != "v1" {
        assert!(start.elapsed() < Duration::from_secs(10), "not reverted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!state_file(d.path(), "reboot-guard.json").exists(), "no reboot for a generation not marked for one");
}

/// `Reboot` on a simulated host is refused with a clear error and leaves
/// the pending generation as it was (no mark, same deadline), no hook.
#[test]
fn reboot_request_is_refused_on_a_simulated_host() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("run/systemd/system")).unwrap();
    let mut a = agent(d.path());
    apply(&mut a, "v1", 0);
    apply(&mut a, "v2", 600_000);
    let before = fs::read(state_file(d.path(), "pending.json")).unwrap();
    let sha = "0".repeat(64);
    let r = a.call(Request::Reboot { confirm_timeout_ms: 1000, boot_timeout_ms: 1000, agent_sha256: sha });
    let Response::Error { message } = r else { panic!("{r:?}") };
    assert!(message.contains("simulated") && message.contains("cannot reboot"), "{message}");
    assert_eq!(fs::read(state_file(d.path(), "pending.json")).unwrap(), before);
    assert!(!d.path().join("etc/systemd/system/drover-boot.service").exists());
    // The session goes on.
    assert!(matches!(a.call(Request::Confirm { generation: 2 }), Response::Confirmed { generation: 2 }));
    a.bye();
}
