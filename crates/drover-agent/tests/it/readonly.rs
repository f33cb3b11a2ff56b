//! A read-only session (`Hello { read_only: true }`, what `drover plan`
//! opens) against the real agent binary on a temporary root: it answers the
//! reading requests, refuses every request that could change the host with
//! an error that says why, and creates nothing, not even its state directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use drover_proto::{ChangeKind, Manifest, PathNow, Request, Response};

use crate::support::files::{file_entry, hash, snapshot};
use crate::support::Agent;

#[test]
fn a_read_only_session_reads_refuses_changes_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/motd"), "host text\n").unwrap();
    fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("/elsewhere", root.join("etc/link")).unwrap();
    let before = snapshot(root);

    let mut s = Agent::read_only(root);
    assert_eq!((s.state.current, s.state.next, s.state.recovered.as_deref()), (None, 1, None));

    let content = b"project text\n";
    let manifest = Manifest { entries: vec![file_entry("/etc/motd", content)], ..Default::default() };
    match s.call(Request::Diff { manifest, generation: 1 }) {
        Response::Diff { changes, missing, .. } => {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].kind, ChangeKind::Add);
            assert_eq!(missing, vec![(hash(content), 0)]);
        }
        other => panic!("{other:?}"),
    }
    let paths = vec!["/etc/motd".to_string(), "/etc/link".into(), "/etc/none".into(), "/etc".into()];
    match s.call(Request::ReadPaths { paths, max_bytes: 1024 }) {
        Response::Paths(p) => {
            let PathNow::File { mode, owner, content, size, .. } = &p[0].now else { panic!("{p:?}") };
            assert_eq!(
                (*mode, owner.as_deref(), content.as_deref(), *size),
                (0o640, Some("root"), Some(&b"host text\n"[..]), 10)
            );
            assert_eq!(p[1].now, PathNow::Symlink { target: "/elsewhere".into() });
            assert_eq!(p[2].now, PathNow::Absent);
            assert_eq!(p[3].now, PathNow::Other { what: "a directory".into() });
        }
        other => panic!("{other:?}"),
    }
    // Larger than asked: no content, still size and hash.
    match s.call(Request::ReadPaths { paths: vec!["/etc/motd".into()], max_bytes: 4 }) {
        Response::Paths(p) => {
            let PathNow::File { content, hash: got, .. } = &p[0].now else { panic!("{p:?}") };
            assert_eq!((content, *got), (&None, hash(b"host text\n")));
        }
        other => panic!("{other:?}"),
    }
    let too_many = vec!["/etc/motd".to_string(); drover_proto::READ_PATHS_MAX + 1];
    match s.call(Request::ReadPaths { paths: too_many, max_bytes: 4 }) {
        Response::Error { message } => assert!(message.contains("at most 256"), "{message}"),
        other => panic!("{other:?}"),
    }
    match s.call(Request::ReadPaths { paths: vec!["etc/relative".into()], max_bytes: 4 }) {
        Response::Error { message } => assert!(message.contains("etc/relative"), "{message}"),
        other => panic!("{other:?}"),
    }

    // A bundle's diff reads only: answered (here: a bad index), not refused.
    let bad = Request::BundleDiff { statement: vec![1, 2, 3], signature: String::new(), generation: 1 };
    match s.call(bad) {
        Response::Error { message } => assert!(message.contains("host statement"), "{message}"),
        other => panic!("{other:?}"),
    }

    let refused = [
        Request::Apply { confirm_timeout_ms: 0, stop_first: false },
        Request::Rollback { to: None, confirm_timeout_ms: 0 },
        Request::Confirm { generation: 1 },
        Request::Drain { reason: "x".into() },
        Request::Undrain,
        Request::Exec { command: "touch /tmp/x".into(), timeout_ms: 1000 },
        Request::RelayFetch { peer: "127.0.0.1:1".into(), secret: "t".into(), blobs: vec![] },
    ];
    for req in refused {
        let name = format!("{req:?}");
        match s.call(req) {
            Response::Error { message } => {
                assert!(message.contains("read-only (plan)"), "{name}: {message}");
                assert!(message.starts_with(name.split([' ', '{', '(']).next().unwrap()), "{name}: {message}");
            }
            other => panic!("{name} was not refused: {other:?}"),
        }
    }
    assert!(matches!(s.call(Request::Status), Response::Status(_)));
    assert!(matches!(s.call(Request::Bye), Response::Bye));
    s.child.wait().unwrap();
    assert_eq!(before, snapshot(root), "a read-only session changed the root");
    assert!(!root.join("var/lib/drover").exists());
}
