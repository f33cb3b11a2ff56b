//! `drover image pull` / `drover image update` against a throwaway
//! registry (Debian's docker-registry on loopback) and image files.

use std::path::Path;

use drover_oci::testing::images::{app_images, push, Compression};
use drover_oci::testing::layout::write_docker_save;
use drover_oci::testing::registry::TestRegistry;
use serde_json::Value;

use crate::support::{drover_in, ok};

fn pull_json(p: &Path, args: &[&str]) -> Value {
    let mut a = vec!["image", "pull", "--json"];
    a.extend_from_slice(args);
    let r = drover_in(p, &a);
    ok(&r);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn pinned(p: &Path, reference: &str) -> String {
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(p.join("images.lock")).unwrap()).unwrap();
    let image = lock["image"].as_array().unwrap().iter().find(|i| i["reference"].as_str() == Some(reference)).unwrap();
    image["digests"]["amd64"].as_str().unwrap().to_string()
}

/// A tag is resolved and pinned on first pull; after the tag moves, pulls
/// still give the pinned image until `drover image update` moves the pin;
/// files, bytes and what is shared with other cached images (the busybox
/// base with `tool`, all but the one changed file between app v1 and v2)
/// are reported.
#[test]
fn image_pull_pins_a_tag_and_keeps_the_pin_until_image_update() {
    let reg = TestRegistry::start();
    let (v1, v2, tool) = app_images(Compression::Gzip);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = reg.reference("app:1");
    rt.block_on(push(&app, &v1));
    rt.block_on(push(&reg.reference("tool:1"), &tool));
    let d = tempfile::tempdir().unwrap();
    let p = d.path();

    let first = pull_json(p, &[&app, "--arch", "x86_64"]);
    assert_eq!(first["pin"], "newly pinned");
    assert_eq!(first["manifest_digest"], v1.manifest_digest().as_str());
    assert_eq!(first["config"]["cmd"], serde_json::json!(["httpd", "-f", "-p", "8080", "-h", "/srv"]));
    assert_eq!(first["config"]["exposed_ports"], serde_json::json!(["8080/tcp"]));
    assert_eq!((first["files"].as_u64(), first["shared_files"].as_u64()), (Some(5), Some(0)));
    let busybox = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(first["bytes"].as_u64().unwrap() > busybox, "{first}");
    assert_eq!(pinned(p, &app), v1.manifest_digest());

    let t = pull_json(p, &[&reg.reference("tool:1")]);
    assert_eq!(t["shared_files"], 3, "busybox, passwd, group: {t}");

    rt.block_on(push(&app, &v2));
    let again = pull_json(p, &[&app]);
    assert_eq!(
        (again["pin"].as_str(), again["manifest_digest"].as_str()),
        (Some("pinned"), Some(v1.manifest_digest().as_str()))
    );

    let u = drover_in(p, &["image", "update", &app]);
    ok(&u);
    assert!(u.stdout.contains(&format!("{} -> {}", v1.manifest_digest(), v2.manifest_digest())), "{}", u.stdout);
    assert_eq!(pinned(p, &app), v2.manifest_digest());
    let updated = pull_json(p, &[&app]);
    assert_eq!(updated["manifest_digest"], v2.manifest_digest().as_str());
    assert_eq!(updated["shared_files"], 4, "all but srv/index.html: {updated}");

    let text = drover_in(p, &["image", "pull", &app]);
    ok(&text);
    assert!(text.stdout.contains(&format!("manifest   {}", v2.manifest_digest())), "{}", text.stdout);
    assert!(text.stdout.contains("files      5 (") && text.stdout.contains("4 shared"), "{}", text.stdout);
}

/// `--file` reads a docker save tarball in the project (no pin: the file
/// is the pin); a missing file and a tag the registry lacks fail with exit
/// 1 saying so, and pin nothing.
#[test]
fn image_pull_reads_a_docker_save_file_and_refuses_a_missing_file_or_tag() {
    let reg = TestRegistry::start();
    let (v1, _, _) = app_images(Compression::None);
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir(p.join("images")).unwrap();
    write_docker_save(&p.join("images/app.tar"), &v1, "app", "1");
    let got = pull_json(p, &["--file", "images/app.tar"]);
    assert_eq!((got["pin"].as_str(), got["config_digest"].as_str()), (Some("file"), Some(v1.config_digest().as_str())));
    assert_eq!(got["files"], 5);
    assert!(!p.join("images.lock").exists());

    let r = drover_in(p, &["image", "pull", "--file", "images/nope.tar"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("images/nope.tar: no such image file") && !r.stderr.contains("os error"), "{}", r.stderr);

    let missing = reg.reference("app:404");
    let r = drover_in(p, &["image", "pull", &missing]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("{missing}: not found in the registry")), "{}", r.stderr);
    assert!(!p.join("images.lock").exists());
}
