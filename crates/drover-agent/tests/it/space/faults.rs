//! Each write of a transition failing in turn, by the agent's fault hook
//! (`EIO`, which no filesystem here can be made to return; `EROFS` and
//! `ENOSPC` too, once and for good), and a filesystem really remounted
//! read-only in the middle of the swap.

use std::fs;
use std::path::Path;

use drover_proto::{ApplyOutcome, Request, Response, StorageError, StorageLeft};

use super::disk::{current, differs, mount_of, v1, v2, Tmpfs};
use super::{agent, apply, hold, names_it_all, on_v1, release, storage};

/// Fail write `n` of an apply of generation 2 with `errno` (`persist`: and
/// every write after it); the reply, and the write it hit (None: there were
/// fewer than `n`).
fn fail_write(root: &Path, n: u64, errno: &str, persist: bool) -> (Response, Option<String>) {
    let state = root.join("var/lib/drover");
    let how = if persist { " persist" } else { "" };
    fs::write(state.join("test-fault"), format!("{n} {errno}{how}")).unwrap();
    let r = apply(root, &v2());
    fs::remove_file(state.join("test-fault")).unwrap();
    let hit = fs::read_to_string(state.join("test-fault.reached")).ok();
    let _ = fs::remove_file(state.join("test-fault.reached"));
    (r, hit)
}

fn every_write_fails_in_turn(errno: &str, error: StorageError, persist: bool) {
    let mut hits = Vec::new();
    for n in 1.. {
        assert!(n < 200, "more than 200 writes in one transition?");
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        on_v1(root);
        let (r, hit) = fail_write(root, n, errno, persist);
        let Some(hit) = hit else {
            assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
            break;
        };
        hits.push(hit.clone());
        // A persistent fault may leave the undo to the next session: it
        // runs at Hello, before anything else.
        let a = agent(root);
        let recovered = a.state.recovered.clone().unwrap_or_default();
        assert!(!recovered.contains("could not"), "write {n} ({hit}): {recovered}");
        a.bye();
        match &r {
            Response::Applied(ApplyOutcome::Activated { generation: 2, .. }) => {
                // Refused after the commit (bookkeeping): on generation 2.
                assert_eq!((current(root), differs(root, &v2(), &v1())), (Some(2), vec![]), "write {n} ({hit})");
            }
            _ => {
                let f = storage(&r);
                assert_eq!((f.error, f.generation), (error, Some(1)), "write {n} ({hit}): {f}");
                assert_eq!(f.mount, mount_of(root), "write {n} ({hit}): {f}");
                if f.left == StorageLeft::RolledBack {
                    assert!(f.needed > 0, "write {n} ({hit}): {f}");
                }
                names_it_all(f);
                assert_eq!((current(root), differs(root, &v1(), &v2())), (Some(1), vec![]), "write {n} ({hit}): {f}");
            }
        }
        let r = apply(root, &v2());
        let converged = matches!(
            r,
            Response::Applied(ApplyOutcome::Activated { generation: 2, .. } | ApplyOutcome::UpToDate { .. })
        );
        assert!(converged, "write {n} ({hit}), then no fault: {r:?}");
        assert_eq!(differs(root, &v2(), &v1()), Vec::<String>::new(), "write {n} ({hit}), then no fault");
    }
    eprintln!("{errno}: {} writes failed in turn: {hits:?}", hits.len());
    for w in ["keep", "backup", "state", "sync", "create", "write", "fsync", "mkdir", "remove", "rename", "retire"] {
        assert!(hits.iter().any(|h| h == w), "no {w} write failed: {hits:?}");
    }
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn eio_at_every_write_of_a_transition_leaves_one_generation_and_the_next_apply_converges() {
    every_write_fails_in_turn("EIO", StorageError::Io, false);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn erofs_from_every_write_of_a_transition_on_leaves_one_generation_and_the_next_apply_converges() {
    every_write_fails_in_turn("EROFS", StorageError::ReadOnly, true);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn enospc_from_every_write_of_a_transition_on_leaves_one_generation_and_the_next_apply_converges() {
    every_write_fails_in_turn("ENOSPC", StorageError::NoSpace, true);
}

/// `/srv` (a tmpfs) remounted read-only halfway through the swap: the undo
/// cannot write either, so the transition is left to the next session.
/// Until the filesystem is writable, a session still opens and `status`
/// answers (recovery says why it cannot finish) while an apply is refused
/// with the filesystem named; once writable, the next session puts the host
/// back on generation 1 and the apply after it converges.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn a_target_remounted_read_only_mid_swap_keeps_status_working_and_converges_once_writable() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let srv = Tmpfs::mount(&root.join("srv"), 4 << 20);
    on_v1(root);
    let a = hold(root, &v2(), "mid-swap", true);
    srv.read_only(true);
    let r = release(root, a);
    let f = storage(&r);
    assert_eq!((f.error, f.left, f.generation), (StorageError::ReadOnly, StorageLeft::Unfinished, Some(1)), "{f}");
    assert_eq!(f.mount, srv.at.to_str().unwrap(), "{f}");
    names_it_all(f);

    let mut a = agent(root);
    let recovered = a.state.recovered.clone().unwrap_or_default();
    assert!(
        recovered.contains("recovery could not finish") && recovered.contains(srv.at.to_str().unwrap()),
        "{recovered}"
    );
    assert!(matches!(a.call(Request::Status), Response::Status(_)), "status answers");
    a.bye();
    // An apply is refused at its first request that changes the host.
    let mut a = agent(root);
    let (m, _) = super::disk::manifest(&v2());
    let r = a.call(Request::Diff { manifest: m, generation: a.state.next });
    a.bye();
    let f = storage(&r);
    assert_eq!((f.error, f.mount.as_str()), (StorageError::ReadOnly, srv.at.to_str().unwrap()), "{f}");

    srv.read_only(false);
    let a = agent(root);
    let recovered = a.state.recovered.clone().unwrap_or_default();
    assert!(recovered.contains("rolled back"), "{recovered}");
    a.bye();
    assert_eq!((current(root), differs(root, &v1(), &v2())), (Some(1), vec![]));
    let r = apply(root, &v2());
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(differs(root, &v2(), &v1()), Vec::<String>::new());
}
