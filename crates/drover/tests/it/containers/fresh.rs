//! Day-2 commands on a fresh checkout (issue #29): `drover volume ls`,
//! `drover logs` and `drover exec --service` load the project, whose image
//! services need their images prepared. They prepare them as `plan` does,
//! through `images.lock` (the pinned digest, not where the tag has moved
//! since) and the cache, so a checkout with no `.drover/` needs no `plan`
//! first. Simulated hosts: what is under test is the controller's load.

use std::path::Path;

use drover_oci::testing::images::{app_images, push, Compression};
use drover_oci::testing::registry::TestRegistry;

use crate::support::{drover_in, ok, sim_project};

/// The manifest digest of every prepared image of `proj` (one here), by
/// architecture.
fn prepared(proj: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(proj.join(".drover/images/prepared")) else { return vec![] };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        for (arch, a) in v["arches"].as_object().unwrap() {
            out.push(format!("{arch} {}", a["manifest"].as_str().unwrap()));
        }
    }
    out
}

/// The project pins `app:1` at v1 in images.lock, then the tag moves to
/// v2. From a checkout with no `.drover/` (no prepared image, no cache),
/// each of `volume ls`, `logs` and `exec --service` loads the project
/// (none says "not been pulled") and leaves the image prepared at the
/// pinned v1, not v2.
#[test]
fn logs_exec_and_volume_prepare_the_images_of_a_fresh_checkout_through_images_lock() {
    let reg = TestRegistry::start();
    let (v1, v2, _) = app_images(Compression::Gzip);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = reg.reference("app:1");
    rt.block_on(push(&app, &v1));
    let d = tempfile::tempdir().unwrap();
    let proj = sim_project(d.path(), 1);
    let hosts = d.path().join("hosts");
    std::fs::write(proj.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    std::fs::write(proj.join("services/app.toml"), format!("image = {app:?}\nvolumes = [\"data:/data\"]\n")).unwrap();
    ok(&drover_in(&proj, &["image", "pull", &app, "--arch", std::env::consts::ARCH]));
    rt.block_on(push(&app, &v2));
    let pinned = vec![format!("{} {}", std::env::consts::ARCH, v1.manifest_digest())];

    let sim = hosts.to_str().unwrap();
    for args in [
        &["volume", "ls", "--simulate", sim][..],
        &["logs", "app", "--simulate", sim],
        &["exec", "all", "--service", "app", "--simulate", sim, "--", "true"],
    ] {
        std::fs::remove_dir_all(proj.join(".drover")).unwrap();
        let r = drover_in(&proj, args);
        assert!(
            !r.stderr.contains("not been pulled") && !r.stderr.contains("drover plan"),
            "{args:?} did not load the project:\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(prepared(&proj), pinned, "{args:?}: the image as images.lock pins it\n{}", r.stderr);
    }
}
