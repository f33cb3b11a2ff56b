//! Real round trips through a throwaway registry (Debian's
//! docker-registry on loopback, plain HTTP).

use drover_oci::testing::images::{self, push, push_index, Compression, LayerBuilder, TestImage};
use drover_oci::testing::registry::TestRegistry;
use drover_oci::{flatten, EntryKind, OciError, Puller, RegistryOptions};
use serde_json::json;

fn puller(cache: &drover_oci::Cache) -> Puller {
    Puller::new(cache.clone(), RegistryOptions::default())
}

/// By tag and by digest: the same manifest digest, config and layers,
/// every blob in the cache under its digest, and `resolve` agrees.
#[tokio::test]
async fn pull_by_tag_and_by_digest_give_the_same_verified_image() {
    let reg = TestRegistry::start();
    let (v1, _, _) = images::app_images(Compression::Gzip);
    let r = reg.reference("app:1");
    push(&r, &v1).await;
    let (_d, cache) = crate::temp_cache();
    let p = puller(&cache);
    let by_tag = p.pull(&r, "x86_64", None).await.unwrap();
    assert_eq!(by_tag.manifest_digest, v1.manifest_digest());
    assert_eq!(by_tag.config_digest, v1.config_digest());
    assert_eq!(by_tag.arch, "amd64");
    let c = &by_tag.config;
    assert_eq!(c.entrypoint, ["/bin/busybox"]);
    assert_eq!(c.cmd, ["httpd", "-f", "-p", "8080", "-h", "/srv"]);
    assert_eq!(c.env, ["PATH=/bin", "APP=demo"]);
    assert_eq!((c.user.as_str(), c.working_dir.as_str()), ("65534:65534", "/srv"));
    assert_eq!(c.exposed_ports, ["8080/tcp"]);
    assert_eq!(c.labels.get("org.example.app").map(String::as_str), Some("demo"));
    assert_eq!(c.healthcheck, None);
    assert_eq!(by_tag.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(), v1.layer_digests());
    for d in v1.layer_digests().iter().chain([&v1.config_digest(), &v1.manifest_digest()]) {
        assert_eq!(drover_oci::sha256_digest(&cache.read_blob(d).unwrap()), *d);
    }
    assert_eq!(p.resolve(&r, "amd64").await.unwrap(), v1.manifest_digest());
    let by_digest = p.pull(&reg.reference(&format!("app@{}", v1.manifest_digest())), "x86_64", None).await.unwrap();
    assert_eq!(
        (by_digest.manifest_digest, by_digest.config, by_digest.layers),
        (by_tag.manifest_digest, by_tag.config, by_tag.layers)
    );
}

/// An index with amd64 and arm64: each architecture (by drover's and by
/// OCI's names) gets its own manifest and files; one it lacks is an error
/// naming what it has; a pinned digest is pulled as pinned even after the
/// tag moved, and from the cache alone once cached.
#[tokio::test]
async fn an_index_gives_each_architecture_its_own_manifest_and_a_pin_holds() {
    let reg = TestRegistry::start();
    let amd = TestImage::oci(
        "amd64",
        vec![LayerBuilder::new().file("arch", 0o644, b"amd64\n").build()],
        Compression::Gzip,
        json!({}),
    );
    let arm = TestImage::oci(
        "arm64",
        vec![LayerBuilder::new().file("arch", 0o644, b"arm64\n").build()],
        Compression::Zstd,
        json!({}),
    );
    let r = reg.reference("multi:1");
    push_index(&r, &[&amd, &arm]).await;
    let (_d, cache) = crate::temp_cache();
    let p = puller(&cache);
    for (arch, want, text) in [("x86_64", &amd, "amd64\n"), ("aarch64", &arm, "arm64\n"), ("arm64", &arm, "arm64\n")] {
        let img = p.pull(&r, arch, None).await.unwrap();
        assert_eq!(img.manifest_digest, want.manifest_digest(), "{arch}");
        let tree = flatten(&cache, &img).unwrap();
        let EntryKind::File { hash, .. } = tree.get("arch").unwrap().kind else { panic!() };
        assert_eq!(std::fs::read(cache.file_path(&hash)).unwrap(), text.as_bytes(), "{arch}");
    }
    let only_amd = reg.reference("amd-only:1");
    push_index(&only_amd, &[&amd]).await;
    let e = p.pull(&only_amd, "aarch64", None).await.unwrap_err();
    assert!(matches!(e, OciError::NoPlatform { .. }) && e.to_string().contains("linux/amd64"), "{e}");
    assert!(matches!(p.pull(&r, "riscv64", None).await.unwrap_err(), OciError::Arch(_)));

    // The tag moves to another image; the pin still gives the old one.
    let pinned = amd.manifest_digest();
    let moved = TestImage::oci(
        "amd64",
        vec![LayerBuilder::new().file("arch", 0o644, b"moved\n").build()],
        Compression::Gzip,
        json!({}),
    );
    push_index(&r, &[&moved, &arm]).await;
    assert_eq!(p.resolve(&r, "x86_64").await.unwrap(), moved.manifest_digest());
    assert_eq!(p.pull(&r, "x86_64", Some(&pinned)).await.unwrap().manifest_digest, pinned);
    drop(reg);
    assert_eq!(p.pull(&r, "x86_64", Some(&pinned)).await.unwrap().manifest_digest, pinned, "not from the cache alone");
}

/// A layer whose bytes changed in the registry is refused with its digest
/// named, and nothing of it is kept in the cache.
#[tokio::test]
async fn a_corrupted_layer_is_refused_naming_its_digest() {
    let reg = TestRegistry::start();
    let (v1, _, _) = images::app_images(Compression::Gzip);
    let r = reg.reference("app:1");
    push(&r, &v1).await;
    let layer = v1.layer_digests()[1].clone();
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let (_d, cache) = crate::temp_cache();
    let e = puller(&cache).pull(&r, "x86_64", None).await.unwrap_err();
    assert!(matches!(e, OciError::Digest { .. }), "{e:?}");
    assert!(e.to_string().contains(&layer) && e.to_string().contains("corrupt"), "{e}");
    assert!(!cache.has_blob(&layer));
}

/// A tag the registry lacks, and a repository it lacks: NotFound, naming
/// the reference.
#[tokio::test]
async fn a_missing_tag_is_a_clear_not_found_error() {
    let reg = TestRegistry::start();
    let (v1, _, _) = images::app_images(Compression::None);
    push(&reg.reference("app:1"), &v1).await;
    let (_d, cache) = crate::temp_cache();
    for missing in [reg.reference("app:9"), reg.reference("nothing:1")] {
        let e = puller(&cache).pull(&missing, "x86_64", None).await.unwrap_err();
        assert!(matches!(e, OciError::NotFound { .. }), "{missing}: {e:?}");
        assert!(e.to_string().starts_with(&format!("{missing}: not found")), "{e}");
    }
}

/// A Docker v2 image: its config's Healthcheck comes through.
#[tokio::test]
async fn a_docker_format_image_keeps_its_healthcheck() {
    let reg = TestRegistry::start();
    let hc = json!({"Test": ["CMD-SHELL", "wget -q -O- localhost:8080"], "Interval": 5_000_000_000u64, "Retries": 3});
    let img = TestImage::docker("amd64", vec![images::base_layer()], json!({"Cmd": ["/bin/sh"], "Healthcheck": hc}));
    let r = reg.reference("docker:1");
    push(&r, &img).await;
    let (_d, cache) = crate::temp_cache();
    let got = puller(&cache).pull(&r, "x86_64", None).await.unwrap();
    let h = got.config.healthcheck.unwrap();
    assert_eq!(
        (h.test, h.interval, h.retries),
        (vec!["CMD-SHELL".to_string(), "wget -q -O- localhost:8080".into()], 5_000_000_000, 3)
    );
}
