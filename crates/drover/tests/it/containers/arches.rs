//! One image service on lab hosts of two architectures (issue #29;
//! docs/containers.md, "Hosts of several architectures"), through the real
//! binary: h2's `uname -m` says `aarch64` (as in `arch.rs`), so it gets
//! the aarch64 agent, which runs under qemu-user and reports `aarch64` in
//! its facts. The image is an amd64+arm64 index on the test registry.
//! `plan` and `render` only: nothing runs the containers, so the hosts
//! need no container runtime (`runtime = "docker"` keeps runc out of the
//! package closure). And, with no lab: an image with none of the fleet's
//! architectures stops the run while the images are prepared.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use drover_oci::testing::images::{app_images, base_layer, push_index, Compression, LayerBuilder, TestImage};
use drover_oci::testing::registry::TestRegistry;
use serde_json::json;

use crate::support::{drover_in, ok, sim_project, Fleet, Run};

const ROOTFS: &str = "/var/lib/drover/containers/app/rootfs";

/// h2 says it is a 64-bit ARM machine (see `arch.rs`).
const AARCH64_UNAME: &str = "#!/bin/sh\n\
# drover test (tests/it/containers/arches.rs): this host says it is a 64-bit ARM machine.\n\
if [ \"$1\" = -m ]; then echo aarch64; else exec /bin/uname \"$@\"; fi\n";

/// The image for OCI architecture `arch`: the busybox base, plus a layer
/// only this architecture has (its loader, and `/srv/arch` naming it),
/// and a config of its own.
fn image(arch: &str, loader: &str) -> TestImage {
    let own = LayerBuilder::new()
        .dir("lib", 0o755)
        .file(loader, 0o755, format!("{arch} loader\n").as_bytes())
        .dir("srv", 0o755)
        .file("srv/arch", 0o644, format!("{arch}\n").as_bytes())
        .build();
    let config = json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["sleep", format!("{arch}-3600")],
                        "Env": [format!("BUILT_FOR={arch}")], "WorkingDir": format!("/srv/{arch}")});
    TestImage::oci(arch, vec![base_layer(), own], Compression::Gzip, config)
}

/// The rootfs paths `plan` would add on a host.
fn rootfs_changes(r: &Run, host: &str) -> BTreeSet<String> {
    let hosts = r.hosts();
    let h = hosts.iter().find(|h| h["host"] == host).unwrap_or_else(|| panic!("no {host} in {}", r.stdout));
    let changes = h["changes"].as_array().unwrap_or_else(|| panic!("no changes for {host}: {h}"));
    changes
        .iter()
        .filter(|c| c["kind"] == "Add")
        .filter_map(|c| c["path"].as_str()?.strip_prefix(ROOTFS).map(str::to_string))
        .collect()
}

fn render(f: &Fleet, host: &str, path: &str) -> String {
    let r = f.drover(&["render", host, path]);
    ok(&r);
    r.stdout
}

/// h1 (x86_64) and h2 (aarch64) run `image = "127.0.0.1:PORT/app:1"`, an
/// amd64+arm64 index: on the first plan (no host had reported) both
/// architectures are pulled and pinned; each host's plan adds its own
/// architecture's tree (the same paths but for its own loader), and what
/// each would get is its own (`/srv/arch`, the loader, the container's
/// env and command). With the architectures cached, an image without an
/// arm64 build is refused before any host is touched, naming the service
/// file, the image, what it has and the fix.
#[test]
fn one_image_service_gives_each_host_the_files_and_config_of_its_own_architecture() {
    assert!(
        drover::agent_bin::for_arch(&drover::agent_bin::Arch::Aarch64).is_some(),
        "this drover carries no aarch64 agent: build it with `bash scripts/build-agents --test-hooks` and DROVER_AGENTS_DIR"
    );
    let reg = TestRegistry::start();
    let (amd, arm) = (image("amd64", "lib/ld-linux-x86-64.so.2"), image("arm64", "lib/ld-linux-aarch64.so.1"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(push_index(&reg.reference("app:1"), &[&amd, &arm]));
    rt.block_on(push_index(&reg.reference("solo:1"), &[&amd]));

    let f = Fleet::new("img-arches", 2);
    let uname = f.host_file(1, "/usr/local/sbin/uname");
    fs::create_dir_all(uname.parent().unwrap()).unwrap();
    fs::write(&uname, AARCH64_UNAME).unwrap();
    fs::set_permissions(&uname, fs::Permissions::from_mode(0o755)).unwrap();
    let p = f.project();
    fs::write(p.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    let service = |tag: &str| {
        let text = format!("image = {:?}\nruntime = \"docker\"\n", reg.reference(tag));
        fs::write(p.join("services/app.toml"), text).unwrap();
    };
    service("app:1");

    let r = f.drover(&["plan", "--json"]);
    ok(&r);
    let (x86, arm64) = (rootfs_changes(&r, "h1"), rootfs_changes(&r, "h2"));
    assert!(x86.contains("/srv/arch") && x86.contains("/bin/busybox"), "{x86:?}");
    let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).cloned().collect::<Vec<_>>();
    assert_eq!(only(&x86, &arm64), ["/lib/ld-linux-x86-64.so.2"], "h1 has what h2 lacks");
    assert_eq!(only(&arm64, &x86), ["/lib/ld-linux-aarch64.so.1"], "h2 has what h1 lacks");
    let lock = fs::read_to_string(p.join("images.lock")).unwrap();
    assert!(lock.contains(&amd.manifest_digest()) && lock.contains(&arm.manifest_digest()), "{lock}");

    for (host, arch, loader) in [("h1", "amd64", "ld-linux-x86-64.so.2"), ("h2", "arm64", "ld-linux-aarch64.so.1")] {
        assert_eq!(render(&f, host, &format!("{ROOTFS}/srv/arch")), format!("{arch}\n"), "{host}");
        assert_eq!(render(&f, host, &format!("{ROOTFS}/lib/{loader}")), format!("{arch} loader\n"), "{host}");
        let env = render(&f, host, "/var/lib/drover/containers/app/env");
        assert!(env.contains(&format!("BUILT_FOR={arch}\n")), "{host}: {env}");
        let run = render(&f, host, "/var/lib/drover/containers/app/run");
        assert!(run.contains(&format!("{arch}-3600")) && run.contains(&format!("/srv/{arch}")), "{host}: {run}");
    }

    service("solo:1");
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    // The report wraps lines (and may break inside the reference).
    let flat = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
    for want in [
        "services/app.toml",
        &format!("host h2: image {} has no aarch64 image (it has: linux/amd64)", reg.reference("solo:1")),
        "build and push the image for aarch64 too",
    ] {
        assert!(flat(&r.stderr).contains(&flat(want)), "{want:?} in\n{}", r.stderr);
    }
    for i in 0..2 {
        assert!(!f.host_file(i, "/var/lib/drover/containers").exists(), "h{} was touched", i + 1);
    }
}

/// The fleet's only host last reported `aarch64`, and the image has an
/// amd64 build only: `plan` stops while preparing the images, before any
/// host is contacted (the simulated host's directory is never made),
/// naming the service file, the image, the architecture, the platforms the
/// image has and the fix; nothing is pinned for arm64.
#[test]
fn an_image_without_any_of_the_fleets_architectures_stops_the_run_naming_what_it_has() {
    let reg = TestRegistry::start();
    let (v1, _, _) = app_images(Compression::Gzip);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = reg.reference("app:1");
    rt.block_on(push_index(&app, &[&v1]));
    let d = tempfile::tempdir().unwrap();
    let proj = sim_project(d.path(), 1);
    std::fs::write(proj.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    std::fs::write(proj.join("services/app.toml"), format!("image = {app:?}\n")).unwrap();
    std::fs::create_dir_all(proj.join(".drover")).unwrap();
    let facts = drover_proto::Facts { arch: "aarch64".into(), ..Default::default() };
    let mut store = drover_state::Store::open(&proj.join(".drover/state.db")).unwrap();
    store.save_facts("s1", &serde_json::to_string(&facts).unwrap()).unwrap();
    drop(store);

    let hosts = d.path().join("hosts");
    let r = drover_in(&proj, &["plan", "--simulate", hosts.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    for want in [
        format!("services/app.toml: image {app:?} for aarch64"),
        format!("{app}: the image index has no linux/arm64 manifest (it has: linux/amd64)"),
        "fix: build and push the image for the fleet's architectures".into(),
    ] {
        assert!(r.stderr.contains(&want), "{want:?} in\n{}", r.stderr);
    }
    assert!(!hosts.join("s1").exists(), "a host was touched");
    assert!(!std::fs::read_to_string(proj.join("images.lock")).unwrap_or_default().contains("arm64"));
}
