//! An agent kept between sessions (`Detach`, what the resident does between
//! commands): between two sessions it holds nothing, so another controller
//! applies at once; its next `Hello` is a whole new session; and a stream
//! cut in the middle of an apply on such a kept agent ends exactly as a
//! stream cut on a fresh one.

use std::fs;
use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, BlobChunk, Request, Response};

use crate::support::files::{files, manifest, read};
use crate::support::Agent;

fn root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("etc")).unwrap();
    d
}

fn activated(r: &Response) -> bool {
    matches!(r, Response::Applied(ApplyOutcome::Activated { .. }))
}

#[test]
fn a_detached_agent_holds_no_lock_and_serves_a_new_hello_on_the_same_process() {
    let d = root();
    // The session takes the lock (it applies), then detaches.
    let mut kept = Agent::spawn(d.path(), &[], b"pw\n", 60_000);
    assert!(activated(&kept.apply(&files(&[("/etc/a", "a1")]), 0)));
    kept.detach();

    // The lock is free at once: another controller's session applies
    // without waiting (the lock wait is 30 s), while the kept agent lives.
    let start = Instant::now();
    let mut other = Agent::spawn(d.path(), &[], b"", 0);
    assert!(activated(&other.apply(&files(&[("/etc/a", "a2")]), 0)));
    other.bye();
    assert!(start.elapsed() < Duration::from_secs(5), "waited for a lock: {:?}", start.elapsed());
    assert!(kept.child.try_wait().unwrap().is_none(), "the detached agent exited");

    // The kept process's next session sees the other's generation (state
    // read anew, not the first session's), and changes the host in turn.
    kept.hello_again(b"pw\n");
    assert_eq!((kept.state.current, kept.state.next), (Some(2), 3));
    let (m, _) = manifest(&files(&[("/etc/a", "a2")]));
    assert!(matches!(kept.call(Request::Check { manifest: m.hash() }), Response::Check { up_to_date: true, .. }));
    assert!(activated(&kept.apply(&files(&[("/etc/a", "a3")]), 0)));
    assert_eq!(read(d.path(), "/etc/a").as_deref(), Some("a3"));
    kept.detach();

    // A detached agent whose stream closes exits cleanly.
    drop(kept.w);
    assert!(kept.child.wait().unwrap().success());
}

/// Cut both pipes while an apply waits at `after-stage`, then let it go on:
/// what the host ends up on, what the next session reports, and how the
/// agent exits. With `kept`, the apply runs in the second session of an
/// agent that detached once.
fn cut_mid_apply(kept: bool) -> (Option<u64>, Option<u64>, String, bool, Vec<Option<String>>) {
    let d = root();
    let v1 = files(&[("/etc/a", "a1"), ("/etc/b", "b1")]);
    let v2 = files(&[("/etc/a", "a2"), ("/etc/b", "b2"), ("/opt/new/e", "e2")]);
    let mut a = Agent::spawn(d.path(), &[], b"", 60_000);
    assert!(activated(&a.apply(&v1, 0)));
    if kept {
        a.detach();
        a.hello_again(b"");
    } else {
        a.bye();
        a = Agent::spawn(d.path(), &[], b"", 60_000);
    }
    fs::write(d.path().join("var/lib/drover/test-hook"), "after-stage").unwrap();
    let (m, blobs) = manifest(&v2);
    let generation = a.state.next;
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m, generation }) else { panic!() };
    for (h, _) in missing {
        a.send(Request::Chunk(BlobChunk { hash: h, offset: 0, data: zstd::encode_all(&blobs[&h][..], 1).unwrap() }));
    }
    a.send(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    let hook = d.path().join("var/lib/drover/test-hook");
    let start = Instant::now();
    while !hook.with_extension("reached").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "the agent never reached the hook");
        std::thread::sleep(Duration::from_millis(10));
    }
    let Agent { mut child, w, r, .. } = a;
    drop((w, r));
    fs::remove_file(&hook).unwrap();
    fs::write(hook.with_extension("continue"), "").unwrap();
    let ok = child.wait().unwrap().success();
    let next = Agent::spawn(d.path(), &[], b"", 0);
    let out = (next.state.current, next.state.pending_confirm, next.state.recovered.clone().unwrap_or_default(), ok);
    next.bye();
    let files = ["/etc/a", "/etc/b", "/opt/new/e"].iter().map(|p| read(d.path(), p)).collect();
    (out.0, out.1, out.2, out.3, files)
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn a_stream_cut_mid_apply_on_a_kept_agent_ends_as_on_a_fresh_one() {
    let fresh = cut_mid_apply(false);
    let kept = cut_mid_apply(true);
    assert_eq!(fresh, kept);
}
