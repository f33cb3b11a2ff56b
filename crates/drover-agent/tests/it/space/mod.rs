//! A full, read-only or failing filesystem under the agent (#26): a
//! transition that cannot fit is refused before its first write, naming
//! the filesystem, its free space and what it needs; one refused mid-way
//! (`ENOSPC` on a really full tmpfs, `EIO`/`EROFS`/`ENOSPC` injected at each
//! write in turn, a tmpfs remounted read-only) leaves the host on one whole
//! generation and says the same; recovery never needs room the disk lacks;
//! `status` works while it cannot finish; and once there is room again the
//! next apply converges, with nothing of the failed attempt left behind.
//!
//! The real-filesystem tests mount tmpfs: root only, like the lab tests.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, BlobChunk, Request, Response, StorageError, StorageFailure, StorageLeft};

use crate::support::Agent;

mod disk;
mod faults;
use disk::{current, differs, manifest, unmanaged_u, v1, v2, Tmpfs, Tree};

fn agent(root: &Path) -> Agent {
    Agent::spawn(root, &[], b"", 0)
}

/// A host on generation 1, with an unmanaged `/srv/u` that generation 2
/// takes over.
fn on_v1(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    let mut a = agent(root);
    let (m, blobs) = manifest(&v1());
    let r = a.apply_manifest(m, &blobs, 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 1, .. })), "{r:?}");
    a.bye();
    fs::write(root.join("srv/u"), unmanaged_u()).unwrap();
}

/// Apply `tree` in a new session; the reply to `Apply`.
fn apply(root: &Path, tree: &Tree) -> Response {
    let mut a = agent(root);
    let (m, blobs) = manifest(tree);
    let r = a.apply_manifest(m, &blobs, 0);
    a.bye();
    r
}

/// Start applying `tree` in a new session and return once the agent is
/// held at hook `point` (`wait`: until [`release`]; else it sleeps there,
/// to be killed).
fn hold(root: &Path, tree: &Tree, point: &str, wait: bool) -> Agent {
    let state = root.join("var/lib/drover");
    let hook = if wait { format!("{point} wait") } else { point.to_string() };
    fs::write(state.join("test-hook"), hook).unwrap();
    let mut a = agent(root);
    let (m, blobs) = manifest(tree);
    let generation = a.state.next;
    let Response::Diff { missing, .. } = a.call(Request::Diff { manifest: m, generation }) else { panic!("diff") };
    for (h, _) in missing {
        a.send(Request::Chunk(BlobChunk { hash: h, offset: 0, data: zstd::encode_all(&blobs[&h][..], 1).unwrap() }));
    }
    a.send(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    let start = Instant::now();
    while !state.join("test-hook.reached").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "the agent never reached {point}");
        std::thread::sleep(Duration::from_millis(5));
    }
    fs::remove_file(state.join("test-hook")).unwrap();
    fs::remove_file(state.join("test-hook.reached")).unwrap();
    a
}

/// Let an agent held by [`hold`] go on; the reply to its `Apply`.
fn release(root: &Path, mut a: Agent) -> Response {
    let go = root.join("var/lib/drover/test-hook.go");
    fs::write(&go, "").unwrap();
    let r = a.recv();
    a.bye();
    fs::remove_file(go).unwrap();
    r
}

/// Apply `tree` with the agent held at hook `point` while `meanwhile` runs
/// (it fills the disk, remounts it read-only); the reply to `Apply`.
fn apply_pausing(root: &Path, tree: &Tree, point: &str, meanwhile: impl FnOnce()) -> Response {
    let a = hold(root, tree, point, true);
    meanwhile();
    release(root, a)
}

/// The storage failure of a reply, which must be one.
fn storage(r: &Response) -> &StorageFailure {
    match r {
        Response::StorageFailed(f) => f,
        other => panic!("expected the filesystem's refusal, got {other:?}"),
    }
}

/// The one line names the mount, the free and the needed bytes.
fn names_it_all(f: &StorageFailure) {
    let line = f.to_string();
    assert!(line.contains(&f.mount), "{line}");
    assert!(
        line.contains(&format!("({} bytes) free", f.free)) || line.contains(&format!("{} bytes free", f.free)),
        "{line}"
    );
    if f.needed > 0 {
        assert!(line.contains(&format!("({} bytes)", f.needed)) && line.contains("needs"), "{line}");
    }
}

/// Generation 2 does not fit on the tmpfs holding `/srv`: refused before
/// anything is written (not a file of the live tree, not a copy in the
/// state directory), naming `/srv`'s mount with its free and needed bytes;
/// with more room, the same apply converges.
#[test]
fn a_transition_that_cannot_fit_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let srv = Tmpfs::mount(&root.join("srv"), 1 << 20);
    on_v1(root);
    srv.fill_to(128 << 10);
    let before = crate::support::files::snapshot(root);
    let r = apply(root, &v2());
    let f = storage(&r);
    assert_eq!((f.error, f.left, f.generation), (StorageError::NoSpace, StorageLeft::Untouched, Some(1)), "{f}");
    assert_eq!(f.mount, srv.at.to_str().unwrap(), "{f}");
    assert!(f.free <= 128 << 10 && f.needed > f.free && f.needed >= 224 << 10, "{f}");
    assert!(f.writing.is_empty(), "refused by the check, before any write: {f}");
    names_it_all(f);
    // The blobs the controller sent (through `partial/`), the manifest, and
    // the lock are all that changed.
    let state = root.join("var/lib/drover");
    let sent = |p: &Path| ["blobs", "partial", "gens", "lock"].iter().any(|d| p.starts_with(state.join(d)));
    let (mut before, mut after) = (before, crate::support::files::snapshot(root));
    before.retain(|p, _| !sent(p));
    after.retain(|p, _| !sent(p));
    assert_eq!(before, after, "a refused transition wrote to the host");
    assert_eq!(differs(root, &v1(), &v2()), Vec::<String>::new());

    srv.unfill();
    let r = apply(root, &v2());
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(differs(root, &v2(), &v1()), Vec::<String>::new());
}

/// The whole host on one small tmpfs (the state directory too), filled
/// after the check so each run finds room for a few more of the
/// transition's writes than the last: the blob copy and backup of the file
/// it takes over, the journal, each staged file, `state.json`, the
/// bookkeeping after the commit. Whichever write is refused, the host ends
/// wholly on generation 1 (or, refused after the commit, 2), the reply
/// names the mount with its free and needed bytes, and once the disk has
/// room the next apply converges with nothing of the attempt left.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn enospc_at_every_write_of_a_transition_leaves_one_generation_and_the_next_apply_converges() {
    let mut refused_writing = std::collections::BTreeSet::new();
    let mut activated = false;
    let mut leave = 0;
    while !activated {
        assert!(leave < 1 << 20, "never activated with {leave} bytes left");
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let disk = Tmpfs::mount(root, 2 << 20);
        on_v1(root);
        let r = apply_pausing(root, &v2(), "after-check", || disk.fill_to(leave));
        match &r {
            Response::Applied(ApplyOutcome::Activated { generation: 2, .. }) => {
                activated = true;
                assert_eq!((current(root), differs(root, &v2(), &v1())), (Some(2), vec![]), "left {leave}");
            }
            _ => {
                let f = storage(&r);
                assert_eq!((f.error, f.generation), (StorageError::NoSpace, Some(1)), "left {leave}: {f}");
                assert!(matches!(f.left, StorageLeft::Untouched | StorageLeft::RolledBack), "left {leave}: {f}");
                assert_eq!(f.mount, root.to_str().unwrap(), "{f}");
                names_it_all(f);
                assert_eq!((current(root), differs(root, &v1(), &v2())), (Some(1), vec![]), "left {leave}: {f}");
                refused_writing.insert(f.writing.clone());
            }
        }
        disk.unfill();
        let r = apply(root, &v2());
        let converged = matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. }))
            || (activated && matches!(r, Response::Applied(ApplyOutcome::UpToDate { .. })));
        assert!(converged, "left {leave}, then freed: {r:?}");
        assert_eq!(differs(root, &v2(), &v1()), Vec::<String>::new(), "left {leave}, then freed");
        leave += 4 << 10;
    }
    eprintln!("refused writes: {refused_writing:?}");
    for w in ["/srv/u", "/srv/a", "/srv/b", "/srv/new/d"] {
        assert!(refused_writing.iter().any(|r| r == w), "no run was refused staging {w}: {refused_writing:?}");
    }
    assert!(refused_writing.iter().any(|r| r.ends_with("/var/lib/drover/journal.json")), "{refused_writing:?}");
    assert!(refused_writing.iter().any(|r| r.contains("/partial/ingest-")), "{refused_writing:?}");
    assert!(refused_writing.iter().any(|r| r.contains("/backup/")), "{refused_writing:?}");
}

/// The wedge of #26: killed after staging a small new version of a 1 MiB
/// file, on a disk then filled to the last byte. Recovery removes the
/// staged copy and leaves the intact 1 MiB file alone (it used to write it
/// again beside itself, fail for space, and fail every session after); the
/// host is on generation 1, `status` answers, and with room again the next
/// apply converges.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn recovery_does_not_rewrite_an_intact_file_on_a_full_disk() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let disk = Tmpfs::mount(root, 3 << 20);
    let big1: Tree = vec![("/srv/big", disk::bytes(b'1', 1 << 20))];
    let big2: Tree = vec![("/srv/big", disk::bytes(b'2', 4 << 10))];
    fs::create_dir_all(root.join("etc")).unwrap();
    assert!(matches!(apply(root, &big1), Response::Applied(ApplyOutcome::Activated { generation: 1, .. })));
    let mut a = hold(root, &big2, "after-stage", false);
    a.child.kill().unwrap(); // SIGKILL: the journal and the staged copy stay
    a.child.wait().unwrap();
    assert!(root.join("var/lib/drover/journal.json").exists());
    disk.fill_to(0);
    assert_eq!(disk.free(), 0);

    let mut a = agent(root);
    let recovered = a.state.recovered.clone().unwrap_or_default();
    assert!(recovered.contains("rolled back") && !recovered.contains("could not"), "{recovered}");
    assert_eq!(a.state.current, Some(1));
    assert!(matches!(a.call(Request::Status), Response::Status(_)), "status answers");
    a.bye();
    assert_eq!(differs(root, &big1, &big2), Vec::<String>::new());

    disk.unfill();
    let r = apply(root, &big2);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(differs(root, &big2, &big1), Vec::<String>::new());
}

/// The state directory on a tmpfs too small for the blobs generation 2
/// needs: the `Diff` is refused before a byte is shipped, naming that
/// filesystem with its free space and what the blobs need; nothing is
/// received, and with room the same apply converges.
#[test]
fn blobs_that_cannot_fit_are_refused_before_they_are_shipped() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let state = Tmpfs::mount(&root.join("var/lib/drover"), 4 << 20);
    fs::set_permissions(&state.at, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    on_v1(root);
    state.fill_to(128 << 10);
    let mut a = agent(root);
    let (m, _) = manifest(&v2());
    let r = a.call(Request::Diff { manifest: m, generation: a.state.next });
    a.bye();
    let f = storage(&r);
    assert_eq!((f.error, f.left, f.generation), (StorageError::NoSpace, StorageLeft::Untouched, Some(1)), "{f}");
    assert_eq!(f.mount, state.at.to_str().unwrap(), "{f}");
    assert!(f.free <= 128 << 10 && f.needed >= 224 << 10, "{f}");
    names_it_all(f);
    let partial = fs::read_dir(root.join("var/lib/drover/partial")).map_or(0, |d| d.count());
    assert_eq!(partial, 0, "nothing was received");

    state.unfill();
    let r = apply(root, &v2());
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(differs(root, &v2(), &v1()), Vec::<String>::new());
}

/// The disk filled to the last byte halfway through the swap (and the file
/// still to be swapped out held open by a reader, so swapping it frees
/// nothing): the swap itself needs no room, but the commit (`state.json`) does, so the
/// transition is undone, and going back has no room to stage a replaced
/// file beside its replacement either: the replacement (kept in the blob
/// store) goes first. The host is wholly on generation 1, and once there
/// is room the next apply converges.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover-agent/test-hooks"
)]
fn a_disk_filled_mid_swap_rolls_back_though_going_back_has_no_room_to_spare() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let disk = Tmpfs::mount(root, 2 << 20);
    let one: Tree = vec![("/srv/a", disk::bytes(b'a', 64 << 10)), ("/srv/b", disk::bytes(b'b', 64 << 10))];
    let two: Tree = vec![("/srv/a", disk::bytes(b'A', 64 << 10)), ("/srv/b", disk::bytes(b'B', 64 << 10))];
    fs::create_dir_all(root.join("etc")).unwrap();
    assert!(matches!(apply(root, &one), Response::Applied(ApplyOutcome::Activated { generation: 1, .. })));
    // Someone holds the old `/srv/b` open: swapping it out frees nothing.
    let mut held = None;
    let r = apply_pausing(root, &two, "mid-swap", || {
        held = Some(fs::File::open(root.join("srv/b")).unwrap());
        disk.fill_to(0);
    });
    drop(held);
    let f = storage(&r);
    assert_eq!((f.error, f.left, f.generation), (StorageError::NoSpace, StorageLeft::RolledBack, Some(1)), "{f}");
    assert!(f.writing.ends_with("/var/lib/drover/state.json"), "the commit was refused: {f}");
    names_it_all(f);
    assert_eq!((current(root), differs(root, &one, &two)), (Some(1), vec![]));

    disk.unfill();
    let r = apply(root, &two);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(differs(root, &two, &one), Vec::<String>::new());
}
