//! Image files (docker save, OCI layout dir and tar) against the registry
//! pull of the same image, and the shared-base property.

use drover_oci::testing::images::{self, push, Compression};
use drover_oci::testing::layout::{write_docker_save, write_oci_dir, write_oci_tar};
use drover_oci::testing::registry::TestRegistry;
use drover_oci::{flatten, load_file, OciError, Puller, RegistryOptions};

/// A legacy `docker save` tarball (written by hand: no Docker daemon
/// here), an OCI layout directory and an OCI layout tar of one image read
/// the same config and flatten to the same tree as its registry pull; the
/// layouts (same blobs) even have its manifest digest.
#[tokio::test]
async fn docker_save_and_oci_layouts_read_the_same_as_the_registry_pull() {
    let reg = TestRegistry::start();
    let (v1, _, _) = images::app_images(Compression::Gzip);
    let r = reg.reference("app:1");
    push(&r, &v1).await;
    let (d, cache) = crate::temp_cache();
    let pulled = Puller::new(cache.clone(), RegistryOptions::default()).pull(&r, "x86_64", None).await.unwrap();
    let want = flatten(&cache, &pulled).unwrap();
    assert!(want.file_count() > 3 && want.get("bin/busybox").is_some());

    let save = d.path().join("app.tar");
    write_docker_save(&save, &v1, "app", "1");
    let oci_dir = d.path().join("app-oci");
    write_oci_dir(&oci_dir, &[&v1], "1");
    let oci_tar = d.path().join("app-oci.tar");
    write_oci_tar(&oci_tar, &[&v1], "1");
    for path in [&save, &oci_dir, &oci_tar] {
        // A fresh cache each: nothing comes from the registry pull's.
        let (_d2, c2) = crate::temp_cache();
        let img = load_file(&c2, path, "x86_64").unwrap();
        assert_eq!(img.config, pulled.config, "{}", path.display());
        assert_eq!(img.config_digest, pulled.config_digest, "{}", path.display());
        assert_eq!(flatten(&c2, &img).unwrap(), want, "{}", path.display());
        if path != &save {
            assert_eq!(img.manifest_digest, pulled.manifest_digest, "{}", path.display());
        }
    }
    // The docker save's manifest digest is that of the manifest drover
    // wrote for it, which is in the cache and stable.
    let (_d3, c3) = crate::temp_cache();
    let a = load_file(&c3, &save, "x86_64").unwrap();
    assert_eq!(drover_oci::sha256_digest(&c3.read_blob(&a.manifest_digest).unwrap()), a.manifest_digest);
    assert_eq!(load_file(&c3, &save, "x86_64").unwrap().manifest_digest, a.manifest_digest);
}

/// A blob of an OCI layout whose bytes do not match its name is refused,
/// naming the digest; a file that is no image says what it expected.
#[test]
fn a_corrupted_oci_layout_blob_is_refused_naming_its_digest() {
    let (v1, _, _) = images::app_images(Compression::Gzip);
    let (d, cache) = crate::temp_cache();
    let dir = d.path().join("oci");
    write_oci_dir(&dir, &[&v1], "1");
    let layer = v1.layer_digests()[0].clone();
    let f = dir.join("blobs/sha256").join(&layer[7..]);
    let mut b = std::fs::read(&f).unwrap();
    b[100] ^= 1;
    std::fs::write(&f, b).unwrap();
    let e = load_file(&cache, &dir, "x86_64").unwrap_err();
    assert!(matches!(e, OciError::Digest { .. }) && e.to_string().contains(&layer), "{e}");

    let junk = d.path().join("junk.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&junk).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    t.append_data(&mut h, "hello.txt", &b"hi"[..]).unwrap();
    t.into_inner().unwrap();
    let e = load_file(&cache, &junk, "x86_64").unwrap_err();
    assert!(e.to_string().contains("neither an OCI image layout"), "{e}");
}

/// app v1 and v2 (v2 changes `srv/index.html` only) share every other
/// file's hash; `tool` shares exactly the busybox base's files with them;
/// the cache's record of flattened images counts the same.
#[tokio::test]
async fn images_sharing_a_base_share_every_unchanged_file() {
    let reg = TestRegistry::start();
    let (v1, v2, tool) = images::app_images(Compression::Zstd);
    let (_d, cache) = crate::temp_cache();
    let p = Puller::new(cache.clone(), RegistryOptions::default());
    let mut trees = Vec::new();
    for (tag, img) in [("app:1", &v1), ("app:2", &v2), ("tool:1", &tool)] {
        push(&reg.reference(tag), img).await;
        let got = p.pull(&reg.reference(tag), "x86_64", None).await.unwrap();
        trees.push((got.manifest_digest.clone(), flatten(&cache, &got).unwrap()));
    }
    let files = |t: &drover_oci::Tree| -> std::collections::BTreeMap<String, blake3::Hash> {
        t.entries
            .iter()
            .filter_map(|e| match e.kind {
                drover_oci::EntryKind::File { hash, .. } => Some((e.path.clone(), hash)),
                _ => None,
            })
            .collect()
    };
    let (f1, f2, ft) = (files(&trees[0].1), files(&trees[1].1), files(&trees[2].1));
    assert_eq!(f1.keys().collect::<Vec<_>>(), f2.keys().collect::<Vec<_>>());
    let changed: Vec<&String> = f1.keys().filter(|k| f1[*k] != f2[*k]).collect();
    assert_eq!(changed, ["srv/index.html"]);
    let base = ["bin/busybox", "etc/group", "etc/passwd"];
    let shared_with_tool: Vec<&str> = ft.keys().filter(|k| f1.get(*k) == Some(&ft[*k])).map(String::as_str).collect();
    assert_eq!(shared_with_tool, base);

    for (digest, tree) in &trees {
        cache.record_tree(digest, &tree.file_hashes()).unwrap();
    }
    assert_eq!(cache.shared_files(&trees[1].0, &trees[1].1.file_hashes()).unwrap(), f2.len() - 1);
    assert_eq!(cache.shared_files(&trees[2].0, &trees[2].1.file_hashes()).unwrap(), base.len());
}

/// The files real tools write: skopeo (containers/image, which implements
/// `docker save`'s format and OCI layouts) copies the registry's image to
/// a `docker-archive` tarball, an `oci-archive` tar and an `oci` layout
/// directory; each reads the same config and tree as the registry pull.
#[tokio::test]
async fn skopeo_written_files_read_the_same_as_the_registry_pull() {
    assert!(
        std::path::Path::new("/usr/bin/skopeo").exists(),
        "this test needs Debian's skopeo (bash scripts/deps --test)"
    );
    let reg = TestRegistry::start();
    let (v1, _, _) = images::app_images(Compression::Gzip);
    let r = reg.reference("app:1");
    push(&r, &v1).await;
    let (d, cache) = crate::temp_cache();
    let pulled = Puller::new(cache.clone(), RegistryOptions::default()).pull(&r, "x86_64", None).await.unwrap();
    let want = flatten(&cache, &pulled).unwrap();
    let targets = [
        ("docker-archive", d.path().join("save.tar"), ":app:1"),
        ("oci-archive", d.path().join("oci.tar"), ":1"),
        ("oci", d.path().join("oci-dir"), ":1"),
    ];
    for (kind, path, tag) in &targets {
        let o = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false", "--insecure-policy"])
            .arg(format!("docker://{r}"))
            .arg(format!("{kind}:{}{tag}", path.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo copy to {kind}: {}", String::from_utf8_lossy(&o.stderr));
        if *kind == "docker-archive" {
            // The legacy format (no index.json), as `docker save` wrote it before Docker 25.
            let mut t = tar::Archive::new(std::fs::File::open(path).unwrap());
            let names: Vec<String> =
                t.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
            assert!(names.contains(&"manifest.json".into()) && !names.contains(&"index.json".into()), "{names:?}");
        }
        let (_d2, c2) = crate::temp_cache();
        let img = load_file(&c2, path, "x86_64").unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(img.config, pulled.config, "{kind}");
        assert_eq!(flatten(&c2, &img).unwrap(), want, "{kind}");
    }
}
