//! The real agent binary, driven over its stdin/stdout against a temporary
//! target root: every failure path the transition machinery handles is made
//! to happen here (SIGKILL mid-swap and after commit, corrupt blobs, escapes,
//! drift, an unconfirmed generation).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, BlobChunk, ChangeKind, Request, Response};

use crate::support::files::{files, hash, manifest, read, snapshot};
use crate::support::Agent;

fn agent(root: &Path) -> Agent {
    agent_idle(root, 0)
}

/// With the controller's idle limit (`Hello::idle_ms`), after a line on
/// stdin as sudo's password prompt leaves it.
fn agent_idle(root: &Path, idle_ms: u64) -> Agent {
    Agent::spawn(root, &[], b"a sudo password line\n", idle_ms)
}

fn root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("etc")).unwrap();
    d
}

#[test]
fn first_apply_noop_and_one_change() {
    let d = root();
    let v1 = files(&[("/etc/app/a.conf", "a1"), ("/etc/app/b.conf", "b1"), ("/srv/data.txt", "data")]);
    let mut a = agent(d.path());
    let r = a.apply(&v1, 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 1, files_written: 3, .. })), "{r:?}");
    assert_eq!(read(d.path(), "/etc/app/a.conf").as_deref(), Some("a1"));
    a.bye();

    // No-op: the cheap check says up to date and nothing on disk changes.
    let before = snapshot(d.path());
    let mut a = agent(d.path());
    let (m, _) = manifest(&v1);
    assert_eq!(a.state.current_manifest, Some(m.hash()));
    assert!(matches!(a.call(Request::Check { manifest: m.hash() }), Response::Check { up_to_date: true, .. }));
    a.bye();
    assert_eq!(before, snapshot(d.path()), "a no-op session wrote to the host");

    // One file changed: one change, one blob.
    let mut a = agent(d.path());
    let v2 = files(&[("/etc/app/a.conf", "a2"), ("/etc/app/b.conf", "b1"), ("/srv/data.txt", "data")]);
    let (m2, _) = manifest(&v2);
    let Response::Diff { changes, missing, .. } = a.call(Request::Diff { manifest: m2, generation: 2 }) else {
        panic!()
    };
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].path.as_str(), changes[0].kind), ("/etc/app/a.conf", ChangeKind::Modify));
    assert_eq!(missing.len(), 1);
    a.bye();
}

#[test]
fn drift_is_reported_restored_and_the_edit_kept() {
    let d = root();
    let v1 = files(&[("/etc/motd", "managed")]);
    let mut a = agent(d.path());
    a.apply(&v1, 0);
    a.bye();
    fs::write(d.path().join("etc/motd"), "edited by hand").unwrap();
    let mut a = agent(d.path());
    let (m, _) = manifest(&v1);
    let Response::Check { up_to_date, drift } = a.call(Request::Check { manifest: m.hash() }) else { panic!() };
    assert!(!up_to_date);
    assert_eq!(drift, vec!["/etc/motd"]);
    let Response::Diff { changes, .. } = a.call(Request::Diff { manifest: m, generation: 2 }) else { panic!() };
    assert_eq!(changes[0].kind, ChangeKind::Restore);
    let r = a.call(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { .. })), "{r:?}");
    a.bye();
    assert_eq!(read(d.path(), "/etc/motd").as_deref(), Some("managed"));
    assert_eq!(read(d.path(), "/var/lib/drover/backup/2/etc/motd").as_deref(), Some("edited by hand"));
}

/// Kill the agent at a hook point during an apply from v1 to v2 (with
/// `confirm_ms`); return the recovery message the next agent reports and the
/// state it reports.
fn kill_at(point: &str, confirm_ms: u64) -> (tempfile::TempDir, String, drover_proto::HostState) {
    let d = root();
    let v1 = files(&[("/etc/a", "a1"), ("/etc/b", "b1"), ("/etc/c", "c1"), ("/etc/d", "d1")]);
    let v2 = files(&[("/etc/a", "a2"), ("/etc/b", "b2"), ("/etc/c", "c2"), ("/opt/new/e", "e2")]);
    let mut a = agent(d.path());
    a.apply(&v1, 0);
    a.bye();
    fs::write(d.path().join("var/lib/drover/test-hook"), point).unwrap();
    let mut a = agent(d.path());
    let generation = a.state.next;
    let (m, blobs) = manifest(&v2);
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m, generation }) else { panic!() };
    for (h, _) in missing {
        a.send(Request::Chunk(BlobChunk { hash: h, offset: 0, data: zstd::encode_all(&blobs[&h][..], 1).unwrap() }));
    }
    a.send(Request::Apply { confirm_timeout_ms: confirm_ms, stop_first: false });
    let reached = d.path().join("var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "agent never reached {point}");
        std::thread::sleep(Duration::from_millis(10));
    }
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    fs::remove_file(d.path().join("var/lib/drover/test-hook")).unwrap();
    let a = agent(d.path());
    let msg = a.state.recovered.clone().unwrap_or_default();
    let state = a.state.clone();
    a.bye();
    (d, msg, state)
}

fn assert_on_v1(d: &Path) {
    for (p, c) in [("/etc/a", "a1"), ("/etc/b", "b1"), ("/etc/c", "c1"), ("/etc/d", "d1")] {
        assert_eq!(read(d, p).as_deref(), Some(c), "{p}");
    }
    assert!(!d.join("opt").exists(), "directories created by the interrupted apply are gone");
    assert!(!d.join("var/lib/drover/pending.json").exists(), "no activation left pending");
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn sigkill_mid_swap_recovers_to_the_old_generation() {
    let (d, msg, st) = kill_at("mid-swap", 0);
    assert!(msg.contains("rolled back"), "{msg}");
    assert_eq!(st.current, Some(1));
    assert_on_v1(d.path());
    let leftovers: Vec<_> = fs::read_dir(d.path().join("etc"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".drover"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn sigkill_after_stage_recovers_to_the_old_generation() {
    let (d, msg, st) = kill_at("after-stage", 0);
    assert!(msg.contains("rolled back"), "{msg}");
    assert_eq!(st.current, Some(1));
    assert_on_v1(d.path());
}

/// Committed, but its services were never restarted nor checked: the new
/// generation never proved itself, so recovery reverts it (it used to stay,
/// reported "unchanged" by the next run with stale services).
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn sigkill_after_commit_reverts_the_unproven_generation() {
    let (d, msg, st) = kill_at("after-commit", 0);
    assert!(msg.contains("had committed") && msg.contains("generation 2 reverted to 1"), "{msg}");
    assert_eq!((st.current, st.pending_confirm), (Some(1), None));
    assert_on_v1(d.path());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn sigkill_before_health_reverts_the_unproven_generation() {
    let (d, msg, st) = kill_at("before-health", 0);
    assert!(msg.contains("generation 2 reverted to 1") && msg.contains("health checks"), "{msg}");
    assert_eq!((st.current, st.pending_confirm), (Some(1), None));
    assert_on_v1(d.path());
}

/// Healthy and waiting for confirmation when killed: the watchdog (a
/// separate process) still reverts at the deadline.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn sigkill_awaiting_confirm_is_reverted_at_the_deadline() {
    let (d, msg, st) = kill_at("awaiting-confirm", 1500);
    assert_eq!(msg, "", "nothing to recover before the deadline");
    assert_eq!((st.current, st.pending_confirm), (Some(2), Some(2)));
    assert_eq!(read(d.path(), "/etc/a").as_deref(), Some("a2"));
    let start = Instant::now();
    while read(d.path(), "/etc/a").as_deref() != Some("a1") {
        assert!(start.elapsed() < Duration::from_secs(15), "not reverted after the deadline");
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = agent(d.path());
    assert_eq!((a.state.current, a.state.pending_confirm), (Some(1), None));
    a.bye();
    assert_on_v1(d.path());
}

#[test]
fn corrupt_blob_is_refused_and_nothing_changes() {
    let d = root();
    let mut a = agent(d.path());
    let v1 = files(&[("/etc/x", "good content")]);
    let (m, _) = manifest(&v1);
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m, generation: 1 }) else { panic!() };
    let evil = b"evil content";
    a.send(Request::Chunk(BlobChunk { hash: missing[0].0, offset: 0, data: zstd::encode_all(&evil[..], 1).unwrap() }));
    let Response::Error { message } = a.call(Request::Apply { confirm_timeout_ms: 0, stop_first: false }) else {
        panic!()
    };
    assert!(message.contains("failed verification"), "{message}");
    a.bye();
    assert!(!d.path().join("etc/x").exists());
}

#[test]
fn paths_escaping_the_root_are_refused() {
    let d = root();
    let mut a = agent(d.path());
    let mut m = manifest(&files(&[("/etc/x", "x")])).0;
    m.entries[0].path = "/etc/../../outside".into();
    let Response::Error { message } = a.call(Request::Diff { manifest: m, generation: 1 }) else { panic!() };
    assert!(message.contains("invalid manifest"), "{message}");
    a.bye();
    assert!(!d.path().parent().unwrap().join("outside").exists());
}

#[test]
fn rollback_returns_to_the_previous_generation() {
    let d = root();
    let mut a = agent(d.path());
    a.apply(&files(&[("/etc/v", "one")]), 0);
    a.apply(&files(&[("/etc/v", "two"), ("/etc/extra", "x")]), 0);
    let r = a.call(Request::Rollback { to: None, confirm_timeout_ms: 0 });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 1, .. })), "{r:?}");
    a.bye();
    assert_eq!(read(d.path(), "/etc/v").as_deref(), Some("one"));
    assert!(!d.path().join("etc/extra").exists());
    let a = agent(d.path());
    assert_eq!(a.state.current, Some(1));
    assert_eq!(a.state.generations, vec![1, 2]);
    a.bye();
}

#[test]
fn unconfirmed_generation_is_reverted_by_the_watchdog_and_unmanaged_files_restored() {
    let d = root();
    fs::write(d.path().join("etc/hosts.conf"), "the operator's own file").unwrap();
    let mut a = agent(d.path());
    a.apply(&files(&[("/etc/base", "base")]), 0);
    let r = a.apply(&files(&[("/etc/base", "base"), ("/etc/hosts.conf", "drover's version")]), 500);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    a.bye();
    assert_eq!(read(d.path(), "/etc/hosts.conf").as_deref(), Some("drover's version"));
    // No confirmation: the detached watchdog reverts after the deadline.
    let start = Instant::now();
    while read(d.path(), "/etc/hosts.conf").as_deref() != Some("the operator's own file") {
        assert!(start.elapsed() < Duration::from_secs(10), "watchdog did not revert");
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = agent(d.path());
    assert_eq!(a.state.current, Some(1));
    assert_eq!(a.state.pending_confirm, None);
    a.bye();
}

#[test]
fn confirmed_generation_stays() {
    let d = root();
    let mut a = agent(d.path());
    a.apply(&files(&[("/etc/base", "one")]), 0);
    a.apply(&files(&[("/etc/base", "two")]), 800);
    a.bye();
    let mut a = agent(d.path());
    assert_eq!(a.state.pending_confirm, Some(2));
    assert!(matches!(a.call(Request::Confirm { generation: 2 }), Response::Confirmed { generation: 2 }));
    a.bye();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read(d.path(), "/etc/base").as_deref(), Some("two"));
    let mut a = agent(d.path());
    assert_eq!(a.state.current, Some(2));
    // Confirming a generation that is no longer current says so (typed).
    let r = a.call(Request::Confirm { generation: 1 });
    assert!(matches!(r, Response::NotConfirmed { generation: 1, current: Some(2), .. }), "{r:?}");
    a.bye();
}

#[test]
fn interrupted_transfer_resumes_from_the_offset() {
    let d = root();
    let big: &'static str = Box::leak("0123456789".repeat(300_000).into_boxed_str());
    let v = files(&[("/srv/big.bin", big)]);
    let (m, blobs) = manifest(&v);
    let h = hash(big.as_bytes());
    let mut a = agent(d.path());
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m.clone(), generation: 1 }) else { panic!() };
    assert_eq!(missing, vec![(h, 0)]);
    a.send(Request::Chunk(BlobChunk {
        hash: h,
        offset: 0,
        data: zstd::encode_all(&blobs[&h][..1_000_000], 1).unwrap(),
    }));
    // The link drops here.
    drop(a.w);
    a.child.wait().unwrap();
    let mut a = agent(d.path());
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m, generation: 1 }) else { panic!() };
    assert_eq!(missing, vec![(h, 1_000_000)], "resume from what arrived");
    a.send(Request::Chunk(BlobChunk {
        hash: h,
        offset: 1_000_000,
        data: zstd::encode_all(&blobs[&h][1_000_000..], 1).unwrap(),
    }));
    let r = a.call(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { .. })), "{r:?}");
    a.bye();
    assert_eq!(read(d.path(), "/srv/big.bin").as_deref(), Some(big));
}

/// A controller that took the lock (Diff) and then went silent, as behind a
/// cut link, loses its session after its idle limit: the agent exits, the
/// lock is free for the next session, and what was received is kept.
#[test]
fn a_silent_session_holding_the_lock_ends_and_frees_it() {
    let root = tempfile::tempdir().unwrap();
    let mut a = agent_idle(root.path(), 1000);
    let (m, _) = manifest(&files(&[("/etc/quiet.conf", "v1")]));
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m, generation: 1 }) else { panic!("diff") };
    assert_eq!(missing.len(), 1);

    let start = Instant::now();
    let status = loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the agent kept a silent session open");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(start.elapsed() >= Duration::from_millis(900), "ended before the idle limit: {:?}", start.elapsed());
    assert!(!status.success(), "a session cut short is an error exit");

    // The next session gets the lock at once and applies.
    let mut b = agent(root.path());
    let r = b.apply(&files(&[("/etc/quiet.conf", "v1")]), 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { .. })), "{r:?}");
    assert_eq!(read(root.path(), "/etc/quiet.conf").as_deref(), Some("v1"));
    b.bye();
}
