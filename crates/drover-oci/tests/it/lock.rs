//! images.lock: deterministic, pins per architecture, clear errors.

use drover_oci::{ImageLock, IMAGES_LOCK};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// Pins written in any order read back equal and write the same bytes
/// (references and architectures sorted); pin() says when it changed.
#[test]
fn the_lock_round_trips_deterministically() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(ImageLock::read(d.path()).unwrap(), ImageLock::default());
    let mut a = ImageLock::default();
    assert!(a.pin("zz.example/b:1", "arm64", D2));
    assert!(a.pin("reg.example/a:1", "arm64", D1));
    assert!(a.pin("reg.example/a:1", "amd64", D2));
    assert!(!a.pin("reg.example/a:1", "amd64", D2));
    a.write(d.path()).unwrap();
    let first = std::fs::read_to_string(d.path().join(IMAGES_LOCK)).unwrap();
    let back = ImageLock::read(d.path()).unwrap();
    assert_eq!(back.pinned("reg.example/a:1", "amd64"), Some(D2));
    assert_eq!(back.pinned("reg.example/a:1", "arm64"), Some(D1));
    assert_eq!(back.pinned("zz.example/b:1", "amd64"), None);
    let mut b = ImageLock::default();
    b.pin("reg.example/a:1", "amd64", D2);
    b.pin("reg.example/a:1", "arm64", D1);
    b.pin("zz.example/b:1", "arm64", D2);
    b.write(d.path()).unwrap();
    assert_eq!(std::fs::read_to_string(d.path().join(IMAGES_LOCK)).unwrap(), first);
    assert!(first.find("reg.example/a:1").unwrap() < first.find("zz.example/b:1").unwrap(), "{first}");
    assert!(first.find("amd64").unwrap() < first.find("arm64").unwrap(), "{first}");
}

/// A bad digest, an unknown architecture, an unknown key and a wrong
/// version are errors naming the file, the line and the fix.
#[test]
fn a_bad_lock_names_its_line_and_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "version = 1\n\n[[image]]\nreference = \"a:1\"\n[image.digests]\namd64 = \"sha256:xyz\"\n".to_string(),
            6,
            "sha256 digest",
        ),
        (format!("version = 1\n[[image]]\nreference = \"a:1\"\n[image.digests]\nmips = \"{D1}\"\n"), 5, "architecture"),
        ("version = 1\n[[image]]\nreference = \"a:1\"\ncolour = 1\n".to_string(), 4, "colour"),
        ("version = 7\n".to_string(), 1, "version 7"),
    ];
    for (text, line, what) in cases {
        std::fs::write(d.path().join(IMAGES_LOCK), &text).unwrap();
        let e = ImageLock::read(d.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("images.lock:{line}:")) && e.contains(what) && e.contains("fix:"), "{text}\n→ {e}");
    }
}
