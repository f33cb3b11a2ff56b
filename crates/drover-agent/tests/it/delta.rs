//! Deltas through the real agent binary, as the controller sends them: the
//! `Diff` reply names the base, `Delta` parts rebuild the blob, and
//! `Missing` says which deltas failed and why, so they can be sent whole.

use std::fs;

use drover_proto::{ApplyOutcome, BlobChunk, BlobDelta, Entry, EntryKind, Manifest, Request, Response};

use crate::support::files::{hash, noise};
use crate::support::Agent;

fn manifest(data: &[u8]) -> Manifest {
    let e = Entry {
        path: "/opt/app/bin".into(),
        kind: EntryKind::File { size: data.len() as u64, hash: hash(data) },
        mode: 0o755,
        owner: "root".into(),
        group: "root".into(),
        source: None,
    };
    Manifest { entries: vec![e], ..Default::default() }
}

fn delta(a: &mut Agent, old: &[u8], new: &[u8], damage: bool) {
    let mut d = drover_agent::delta::encode(old, new).unwrap();
    if damage {
        let mid = d.len() / 2;
        d[mid] ^= 0xff;
    }
    let total = d.len() as u64;
    a.send(Request::Delta(BlobDelta { hash: hash(new), base: hash(old), offset: 0, total, data: d }));
}

#[test]
fn a_delta_session_names_the_base_rebuilds_the_blob_and_reports_what_failed() {
    let d = tempfile::tempdir().unwrap();
    let v1 = noise(400_000, 1);
    let mut v2 = v1.clone();
    v2[1234..1244].copy_from_slice(b"ten bytes!");
    let mut v3 = v2.clone();
    v3[9..12].copy_from_slice(b"v3!");
    let mut a = Agent::spawn(d.path(), &[], b"", 0);
    let chunk = |data: &[u8]| BlobChunk { hash: hash(data), offset: 0, data: zstd::encode_all(data, 1).unwrap() };
    // Generation 1 arrives whole: no live generation, no base.
    let Response::Diff { missing, bases, .. } = a.call(Request::Diff { manifest: manifest(&v1), generation: 1 }) else {
        panic!("diff")
    };
    assert_eq!((missing, bases), (vec![(hash(&v1), 0)], vec![]));
    a.send(Request::Chunk(chunk(&v1)));
    let r = a.call(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { .. })), "{r:?}");

    // Generation 2: v1 is named as the base, the delta rebuilds v2.
    let Response::Diff { bases, .. } = a.call(Request::Diff { manifest: manifest(&v2), generation: 2 }) else {
        panic!("diff")
    };
    assert_eq!(bases, [(hash(&v2), hash(&v1))]);
    delta(&mut a, &v1, &v2, false);
    let r = a.call(Request::Missing { blobs: vec![hash(&v2)] });
    assert!(matches!(&r, Response::Missing { missing, failed } if missing.is_empty() && failed.is_empty()), "{r:?}");
    let r = a.call(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(fs::read(d.path().join("opt/app/bin")).unwrap(), v2);

    // Generation 3: a damaged delta is reported, the blob is still missing
    // from 0, and sent whole it is applied.
    let Response::Diff { bases, .. } = a.call(Request::Diff { manifest: manifest(&v3), generation: 3 }) else {
        panic!("diff")
    };
    assert_eq!(bases, [(hash(&v3), hash(&v2))]);
    delta(&mut a, &v2, &v3, true);
    let Response::Missing { missing, failed } = a.call(Request::Missing { blobs: vec![hash(&v3)] }) else {
        panic!("missing")
    };
    assert_eq!(missing, [(hash(&v3), 0)]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].1.contains(&hash(&v3).short()), "{failed:?}");
    a.send(Request::Chunk(chunk(&v3)));
    let r = a.call(Request::Apply { confirm_timeout_ms: 0, stop_first: false });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 3, .. })), "{r:?}");
    assert_eq!(fs::read(d.path().join("opt/app/bin")).unwrap(), v3);
    a.bye();
}
