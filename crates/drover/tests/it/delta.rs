//! Binary deltas on real hosts: a large file changed by a few bytes
//! travels as a delta against the version the host holds, the host's file
//! ends up exactly the new version, and a delta the host cannot use (its
//! stored base damaged, or gone), or a base the controller no longer has,
//! costs a whole transfer, never the apply.

use std::fs;

use crate::support::{noise, Fleet};

const PATH: &str = "/opt/app/payload.bin";
const SIZE: usize = 3 << 20;

fn hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

/// Per host: (bytes_sent, blobs_sent, deltas_sent, delta_failed count).
fn sent(hosts: &[serde_json::Value]) -> Vec<(u64, u64, u64, usize)> {
    hosts
        .iter()
        .map(|h| {
            let n = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("{k} in {h}"));
            let failed = h.get("delta_failed").and_then(|f| f.as_array()).map_or(0, Vec::len);
            (n("bytes_sent"), n("blobs_sent"), n("deltas_sent"), failed)
        })
        .collect()
}

#[test]
fn a_large_file_changed_by_a_few_bytes_travels_as_a_delta_and_falls_back_whole() {
    let f = Fleet::new("delta", 2);
    let file = f.project().join("layers/site").join(PATH.trim_start_matches('/'));
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let v1 = noise(SIZE);
    fs::write(&file, &v1).unwrap();
    let first = f.apply_ok();
    for (bytes, ..) in sent(&first) {
        assert!(bytes > SIZE as u64, "first apply ships the whole file: {bytes}");
    }
    assert!(f.project().join(".drover/bases").join(hex(&v1)).is_file(), "v1 kept as the next base");

    // Sixteen bytes change: every host gets a delta, far under 2 % of the
    // whole file, and holds exactly v2.
    let mut v2 = v1.clone();
    v2[SIZE / 2..SIZE / 2 + 16].copy_from_slice(b"one line changed");
    fs::write(&file, &v2).unwrap();
    let hosts = f.apply_ok();
    for (i, (bytes, blobs, deltas, failed)) in sent(&hosts).into_iter().enumerate() {
        assert_eq!((blobs, deltas, failed), (0, 1, 0), "{}", hosts[i]);
        assert!(bytes < SIZE as u64 / 100, "h{}: {bytes} bytes for a 16-byte change", i + 1);
        assert_eq!(fs::read(f.host_file(i, PATH)).unwrap(), v2, "h{}", i + 1);
    }

    // h1's stored copy of v2 is damaged (same size, one byte off): its
    // delta rebuilds other content, which fails the blake3 check, and v3
    // is sent whole in the same session. h2's copy is gone: no base is
    // offered, and v3 goes whole without a delta.
    let base = |i| f.host_file(i, &format!("/var/lib/drover/blobs/{}", hex(&v2)));
    let mut damaged = fs::read(base(0)).unwrap();
    damaged[100] ^= 1;
    fs::write(base(0), damaged).unwrap();
    fs::remove_file(base(1)).unwrap();
    let mut v3 = v2.clone();
    v3[10..18].copy_from_slice(b"version3");
    fs::write(&file, &v3).unwrap();
    let hosts = f.apply_ok();
    let got = sent(&hosts);
    assert_eq!((got[0].1, got[0].2, got[0].3), (1, 1, 1), "h1: the delta failed, the blob went whole: {}", hosts[0]);
    assert!(hosts[0]["delta_failed"][0].as_str().unwrap().contains("sent whole"), "{}", hosts[0]);
    assert_eq!((got[1].1, got[1].2, got[1].3), (1, 0, 0), "h2: no base, whole: {}", hosts[1]);
    for (i, (bytes, ..)) in got.iter().enumerate() {
        assert!(*bytes > SIZE as u64, "h{}: whole file sent: {bytes}", i + 1);
        assert_eq!(fs::read(f.host_file(i, PATH)).unwrap(), v3, "h{}", i + 1);
    }

    // The controller lost its bases (a fresh checkout): both hosts offer
    // v3, but there is nothing to make a delta from, so v4 goes whole, and
    // is kept for the next release.
    fs::remove_dir_all(f.project().join(".drover/bases")).unwrap();
    let mut v4 = v3.clone();
    v4[SIZE - 8..].copy_from_slice(b"version4");
    fs::write(&file, &v4).unwrap();
    let hosts = f.apply_ok();
    for (i, (bytes, blobs, deltas, failed)) in sent(&hosts).into_iter().enumerate() {
        assert_eq!((blobs, deltas, failed), (1, 0, 0), "{}", hosts[i]);
        assert!(bytes > SIZE as u64, "h{}: whole file sent: {bytes}", i + 1);
        assert_eq!(fs::read(f.host_file(i, PATH)).unwrap(), v4, "h{}", i + 1);
    }
    assert!(f.project().join(".drover/bases").join(hex(&v4)).is_file(), "v4 kept as the next base");
}
