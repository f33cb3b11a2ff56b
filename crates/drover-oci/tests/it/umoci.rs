//! The flattening against a real tool: `umoci unpack` (Debian's umoci)
//! of the same OCI layout must leave the same tree on disk as
//! `Tree::write_to`: kinds, modes, owners, contents, symlink targets,
//! hard-link groups, device numbers and `security.capability`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use drover_oci::testing::images::{self, Compression, LayerBuilder, TestImage};
use drover_oci::testing::layout::write_oci_dir;
use drover_oci::{flatten, load_file};
use serde_json::json;

fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, (String, u64)>) {
    for e in std::fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let p = if rel.is_empty() {
            e.file_name().to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", e.file_name().to_string_lossy())
        };
        let full = root.join(&p);
        let m = std::fs::symlink_metadata(&full).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink {}", std::fs::read_link(&full).unwrap().display())
        } else if ft.is_file() {
            format!("file {}", blake3::hash(&std::fs::read(&full).unwrap()).to_hex())
        } else if ft.is_fifo() {
            "fifo".into()
        } else if ft.is_char_device() {
            format!("char {}", m.rdev())
        } else {
            "other".into()
        };
        let cap = crate::xattr(&full, "security.capability").map(|c| format!("{c:?}")).unwrap_or_default();
        let mode = if ft.is_symlink() { 0 } else { m.mode() & 0o7777 };
        out.insert(
            p.clone(),
            (
                format!(
                    "{what} mode {mode:o} owner {}:{} links {} cap {cap}",
                    m.uid(),
                    m.gid(),
                    if ft.is_dir() { 0 } else { m.nlink() }
                ),
                m.ino(),
            ),
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// Each path's description, with hard-link groups as the sorted set of
/// paths sharing an inode.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut raw = BTreeMap::new();
    walk(root, "", &mut raw);
    let mut by_ino: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (p, (d, ino)) in &raw {
        if d.starts_with("file") {
            by_ino.entry(*ino).or_default().push(p.clone());
        }
    }
    raw.into_iter()
        .map(|(p, (d, ino))| {
            let group = by_ino
                .get(&ino)
                .filter(|g| g.len() > 1 && d.starts_with("file"))
                .map(|g| g.join(","))
                .unwrap_or_default();
            (p, format!("{d} group {group}"))
        })
        .collect()
}

#[test]
fn flattening_matches_umoci_unpack_of_the_same_image() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/umoci").exists() {
        panic!("this test needs root and Debian's umoci (bash scripts/deps --test)");
    }
    let cap: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let l0 = images::base_layer();
    let l1 = LayerBuilder::new()
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .symlink("sbin", "usr/bin")
        .file_owned("usr/bin/tool", 0o4750, 0, 65534, b"tool v1")
        .hardlink("usr/bin/tool-link", "usr/bin/tool")
        .dir("var/cache/app", 0o750)
        .file("var/cache/app/a", 0o644, b"a")
        .file("var/cache/app/b", 0o644, b"b")
        .file("etc/motd", 0o644, b"hello")
        .dir("opt/thing", 0o755)
        .file("opt/thing/x", 0o644, b"x")
        .file("opt/plain", 0o644, b"plain")
        .fifo("run-fifo", 0o600)
        .build();
    let l2 = LayerBuilder::new()
        .file("sbin/added", 0o755, b"via symlinked parent")
        .file("usr/bin/tool", 0o755, b"tool v2")
        .opaque("var/cache/app")
        .file("var/cache/app/c", 0o644, b"c")
        .whiteout("etc/motd")
        .whiteout("bin/wget")
        .file("opt/thing", 0o644, b"now a file")
        .dir("opt/plain", 0o700)
        .char_device("null", 0o666, 1, 3)
        .file_xattrs("usr/bin/ping", 0o755, b"ping", &[("security.capability", cap)])
        .hardlink("usr/bin/ping2", "usr/bin/ping")
        .build();
    let img = TestImage::oci("amd64", vec![l0, l1, l2], Compression::Gzip, json!({"Cmd": ["/bin/sh"]}));
    let (d, cache) = crate::temp_cache();
    let layout = d.path().join("layout");
    write_oci_dir(&layout, &[&img], "t");
    let bundle = d.path().join("bundle");
    let o = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&o.stderr));

    let tree = flatten(&cache, &load_file(&cache, &layout, "x86_64").unwrap()).unwrap();
    let ours = d.path().join("ours");
    tree.write_to(&cache, &ours).unwrap();
    let (want, got) = (describe(&bundle.join("rootfs")), describe(&ours));
    let diff: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| format!("{k}:\n  umoci: {:?}\n  ours:  {:?}", want.get(k), got.get(k)))
        .collect();
    assert!(diff.is_empty(), "umoci and drover differ:\n{}", diff.join("\n"));
    assert!(got["usr/bin/added"].starts_with("file"), "{got:#?}");
    assert!(got["usr/bin/ping2"].ends_with("group usr/bin/ping,usr/bin/ping2"), "{got:#?}");
}
