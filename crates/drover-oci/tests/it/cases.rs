//! Flattening cases the generated stacks do not reach: symlinked parents,
//! xattrs, devices and fifos, hard links outliving their target's
//! replacement, whiteouts placed after adds, diff_id checks.

use std::io::Read;

use drover_oci::flatten::{flatten_readers, Flattener};
use drover_oci::testing::images::LayerBuilder;
use drover_oci::{Entry, EntryKind, OciError, Tree};

fn kind<'a>(t: &'a Tree, p: &str) -> &'a EntryKind {
    &t.get(p).unwrap_or_else(|| panic!("{p} missing from {:#?}", t.entries)).kind
}

fn content(cache: &drover_oci::Cache, t: &Tree, p: &str) -> String {
    let (EntryKind::File { hash, .. } | EntryKind::HardLink { hash, .. }) = kind(t, p) else {
        panic!("{p}: not a file")
    };
    let mut s = String::new();
    cache.open_file(hash).unwrap().read_to_string(&mut s).unwrap();
    s
}

/// usrmerge: `bin -> usr/bin` (relative) and `sbin -> /usr/sbin`
/// (absolute) are followed when a later layer adds under them or whites
/// out under them; `..` never leaves the root.
#[test]
fn a_parent_symlink_is_followed_inside_the_root() {
    let (_d, cache) = crate::temp_cache();
    let l0 = LayerBuilder::new()
        .dir("usr/bin", 0o755)
        .dir("usr/sbin", 0o755)
        .symlink("bin", "usr/bin")
        .symlink("sbin", "/usr/sbin")
        .file("usr/bin/old", 0o755, b"old")
        .build();
    let l1 = LayerBuilder::new()
        .file("bin/sh", 0o755, b"sh")
        .file("sbin/init", 0o700, b"init")
        .whiteout("bin/old")
        .file_raw_name("../../escape", b"e")
        .build();
    let t = flatten_readers(&cache, [&l0[..], &l1[..]]).unwrap();
    assert_eq!(content(&cache, &t, "usr/bin/sh"), "sh");
    assert_eq!(content(&cache, &t, "usr/sbin/init"), "init");
    assert!(t.get("usr/bin/old").is_none());
    assert_eq!(kind(&t, "bin"), &EntryKind::Symlink { target: "usr/bin".into() });
    assert_eq!(content(&cache, &t, "escape"), "e");
}

/// `security.capability` (a PAX xattr) is kept on its file; a character
/// device and a fifo are kept as metadata and, as root, written as such
/// with their xattrs.
#[test]
fn xattrs_devices_and_fifos_are_kept_and_written() {
    let (d, cache) = crate::temp_cache();
    // VFS_CAP_REVISION_2, cap_net_bind_service effective+permitted.
    let cap: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let l = LayerBuilder::new()
        .dir("dev", 0o755)
        .char_device("dev/null", 0o666, 1, 3)
        .fifo("dev/pipe", 0o620)
        .dir("bin", 0o755)
        .file_xattrs("bin/ping", 0o755, b"ping", &[("security.capability", cap), ("user.note", b"hi")])
        .build();
    let t = flatten_readers(&cache, [&l[..]]).unwrap();
    let ping: &Entry = t.get("bin/ping").unwrap();
    assert_eq!(ping.xattrs.get("security.capability").map(Vec::as_slice), Some(cap));
    assert_eq!(ping.xattrs.get("user.note").map(Vec::as_slice), Some(&b"hi"[..]));
    assert_eq!(kind(&t, "dev/null"), &EntryKind::CharDevice { major: 1, minor: 3 });
    assert_eq!((kind(&t, "dev/pipe"), t.get("dev/pipe").unwrap().mode), (&EntryKind::Fifo, 0o620));

    let out = d.path().join("root");
    t.write_to(&cache, &out).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(out.join("dev/pipe")).unwrap();
    assert!(m.file_type().is_fifo() && m.mode() & 0o7777 == 0o620);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let m = std::fs::symlink_metadata(out.join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3));
        assert_eq!(crate::xattr(&out.join("bin/ping"), "security.capability").as_deref(), Some(cap));
    }
}

/// A hard link made in layer 0 keeps the content it linked when layer 1
/// replaces or deletes the original; a link made after the replacement
/// sees the new content. The first path in order is the file.
#[test]
fn a_hard_link_keeps_the_content_it_linked() {
    let (_d, cache) = crate::temp_cache();
    let l0 = LayerBuilder::new().file("a", 0o4755, b"one").hardlink("b", "a").hardlink("c", "a").build();
    let l1 = LayerBuilder::new().file("a", 0o644, b"two").whiteout("c").hardlink("d", "a").build();
    let t = flatten_readers(&cache, [&l0[..], &l1[..]]).unwrap();
    assert_eq!(content(&cache, &t, "a"), "two");
    assert_eq!(content(&cache, &t, "b"), "one");
    assert_eq!(t.get("b").unwrap().mode, 0o4755);
    assert!(matches!(kind(&t, "b"), EntryKind::File { .. }), "b is the old inode's only name now");
    assert!(t.get("c").is_none());
    assert!(matches!(kind(&t, "d"), EntryKind::HardLink { target, .. } if target == "a"));
    assert_eq!(t.file_count(), 2);
    assert_eq!(t.total_bytes(), 6);
}

/// A whiteout or opaque marker written after the layer's own entries
/// still removes only lower layers' entries; a whiteout with no name
/// removes nothing.
#[test]
fn whiteouts_act_on_lower_layers_only_wherever_they_sit_in_the_tar() {
    let (_d, cache) = crate::temp_cache();
    let l0 = LayerBuilder::new().file("x", 0o644, b"lower").dir("d", 0o700).file("d/old", 0o644, b"o").build();
    let l1 = LayerBuilder::new()
        .file("x", 0o644, b"upper")
        .file("d/new", 0o644, b"n")
        .whiteout("x")
        .opaque("d")
        // Malformed (no name): ignored, never a whiteout of `d` itself.
        .file("d/.wh.", 0o644, b"")
        .build();
    let t = flatten_readers(&cache, [&l0[..], &l1[..]]).unwrap();
    assert_eq!(content(&cache, &t, "x"), "upper");
    assert_eq!(content(&cache, &t, "d/new"), "n");
    assert!(t.get("d/old").is_none());
    assert_eq!(t.get("d").unwrap().mode, 0o700, "the opaque directory itself stays");
    assert!(t.entries.iter().all(|e| !e.path.contains(".wh.")));
}

/// A layer whose uncompressed tar is not its diff_id is refused, naming
/// the layer and both digests; a hard link to nothing names its path.
#[test]
fn a_layer_that_is_not_its_diff_id_is_refused() {
    let (_d, cache) = crate::temp_cache();
    let l = LayerBuilder::new().file("x", 0o644, b"x").build();
    let wrong = drover_oci::sha256_digest(b"other");
    let e = Flattener::new().apply_layer(&cache, "img", "sha256:abc", &l[..], Some(&wrong)).unwrap_err();
    assert!(matches!(e, OciError::DiffId { .. }), "{e:?}");
    let s = e.to_string();
    assert!(s.contains("sha256:abc") && s.contains(&wrong) && s.contains(&drover_oci::sha256_digest(&l)), "{s}");
    let right = drover_oci::sha256_digest(&l);
    Flattener::new().apply_layer(&cache, "img", "sha256:abc", &l[..], Some(&right)).unwrap();

    let bad = LayerBuilder::new().hardlink("y", "nothing").build();
    let e = flatten_readers(&cache, [&bad[..]]).unwrap_err();
    assert!(e.to_string().contains("y: hard link to nothing, which does not exist"), "{e}");
}

/// A flattened image is kept (every kind of entry, xattrs included) and
/// reused without reading its layers again, but only while every file it
/// names is still in the cache; otherwise it is flattened again.
#[test]
fn a_kept_tree_is_reused_only_while_its_files_are_cached() {
    use drover_oci::testing::images::{Compression, TestImage};
    use drover_oci::testing::layout::write_oci_dir;
    use drover_oci::{flatten, flatten_cached, load_file};

    let cap: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let l = LayerBuilder::new()
        .dir("bin", 0o755)
        .file_xattrs("bin/ping", 0o4755, b"ping", &[("security.capability", cap)])
        .hardlink("bin/ping6", "bin/ping")
        .symlink("bin/p", "ping")
        .char_device("null", 0o666, 1, 3)
        .fifo("pipe", 0o600)
        .build();
    let img = TestImage::oci("amd64", vec![l], Compression::Zstd, serde_json::json!({}));
    let (d, cache) = crate::temp_cache();
    write_oci_dir(&d.path().join("oci"), &[&img], "1");
    let image = load_file(&cache, &d.path().join("oci"), "x86_64").unwrap();
    let first = flatten_cached(&cache, &image).unwrap();
    assert_eq!(first, flatten(&cache, &image).unwrap());

    // Without its layer, only the kept tree can answer.
    let layer = cache.blob_path(&image.layers[0].digest).unwrap();
    std::fs::remove_file(&layer).unwrap();
    assert_eq!(flatten_cached(&cache, &image).unwrap(), first);

    // A file gone from the cache: the kept tree is not trusted, and
    // flattening again needs the layer, which is gone too.
    let EntryKind::File { hash, .. } = kind(&first, "bin/ping").clone() else { panic!() };
    std::fs::remove_file(cache.file_path(&hash)).unwrap();
    let e = flatten_cached(&cache, &image).unwrap_err();
    assert!(e.to_string().contains(&layer.display().to_string()), "{e}");
    let image = load_file(&cache, &d.path().join("oci"), "x86_64").unwrap();
    assert_eq!(flatten_cached(&cache, &image).unwrap(), first);
    assert!(cache.file_path(&hash).is_file());
}
