//! Image services from a registry and from image files (issue #29 items 1
//! and 6), on container-capable lab hosts through the real binary: the
//! controller pulls from a throwaway registry on its loopback (the hosts
//! never reach it), pins in images.lock, and ships the flattened image as
//! managed files: an upgrade ships the changed file only, a second image
//! on the same base ships none of the base, a broken release is rolled
//! back with its volume intact, pinned images run with the registry gone,
//! and a signed bundle installs the containers on a host with no registry.

use std::path::Path;

use drover_lab::Init;
use drover_oci::testing::images::{app_layer, base_layer, busybox, push, Compression, LayerBuilder, TestImage};
use drover_oci::testing::layout::write_docker_save;
use drover_oci::testing::registry::TestRegistry;
use serde_json::json;

use super::{http_get, wait_for_body};
use crate::support::{ok, signed_bundle, usb_stick, Fleet};

/// The app's config: httpd on 8080 serving /srv, as user `nobody` (a
/// name: resolved through the image's own /etc/passwd to 65534:65534).
fn config(cmd: &[&str]) -> serde_json::Value {
    json!({"Entrypoint": ["/bin/busybox"], "Cmd": cmd, "Env": ["PATH=/bin", "APP=demo"],
           "User": "nobody", "WorkingDir": "/srv"})
}

const SERVE: &[&str] = &["httpd", "-f", "-p", "8080", "-h", "/srv"];

fn image(version: &str, cmd: &[&str]) -> TestImage {
    TestImage::oci("amd64", vec![base_layer(), app_layer(version)], Compression::Gzip, config(cmd))
}

fn push_all(reg: &TestRegistry, images: &[(&str, &TestImage)]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (tag, i) in images {
        rt.block_on(push(&reg.reference(tag), i));
    }
}

fn service(p: &Path, name: &str, image: &str, extra: &str) {
    std::fs::write(
        p.join(format!("services/{name}.toml")),
        format!(
            "image = {image}\n{extra}volumes = [\"data:/data\"]\nstop-grace-period = \"1s\"\n[health]\nhttp = \"http://127.0.0.1:8080/\"\nretries = 8\ninterval = \"250ms\"\n"
        ),
    )
    .unwrap();
}

fn n(h: &serde_json::Value, k: &str) -> u64 {
    h[k].as_u64().unwrap_or_else(|| panic!("no {k} in {h:#}"))
}

/// One runit host: pull, pin, run, share the base, upgrade by one file,
/// roll back a broken release, and run offline once pinned.
#[test]
fn a_registry_image_is_pinned_runs_upgrades_by_one_file_rolls_back_and_needs_no_registry_once_cached() {
    let reg = TestRegistry::start();
    let (v1, v2, broken) = (image("1", SERVE), image("2", SERVE), image("2", &["sh", "-c", "echo broken; exit 1"]));
    let tool_layer = LayerBuilder::new().dir("usr", 0o755).file("usr/tool", 0o755, b"#!/bin/sh\necho tool\n").build();
    let tool = TestImage::oci(
        "amd64",
        vec![base_layer(), tool_layer],
        Compression::Gzip,
        json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["sleep", "3600"]}),
    );
    push_all(&reg, &[("app:1", &v1), ("app:2", &v2), ("app:3", &broken), ("tool:1", &tool)]);
    let f = Fleet::containers("img-reg", 1, Init::Runit);
    let p = f.project();
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    let app = |tag: &str| service(&p, "app", &format!("{:?}", reg.reference(&format!("app:{tag}"))), "");
    app("1");
    let addr = format!("{}:8080", f.lab_hosts()[0].address);

    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(wait_for_body(&addr, "<h1>app 1</h1>\n"), "nothing answers at {addr}");
    let lock = std::fs::read_to_string(p.join("images.lock")).unwrap();
    assert!(lock.contains(&reg.reference("app:1")) && lock.contains(&v1.manifest_digest()), "{lock}");
    // The image's `User = "nobody"` resolved in its own /etc/passwd: the
    // volume belongs to the container's 65534:65534.
    let md = std::fs::metadata(f.host_file(0, "/var/lib/drover/volumes/app/data")).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&md), std::os::unix::fs::MetadataExt::gid(&md)), (65534, 65534));
    let r = f.drover(&["exec", "all", "--service", "app", "--", "sh", "-c", "echo kept > /data/keep; echo $APP"]);
    assert!(
        r.code == 0 && r.stdout.contains("demo"),
        "the image's Env reaches the container: {}\n{}",
        r.stdout,
        r.stderr
    );

    // A second image on the same base: its busybox is the blob the host
    // already has, so only the image's own small files travel.
    let bb = busybox().len() as u64;
    service(&p, "tool", &format!("{:?}", reg.reference("tool:1")), "");
    let text = std::fs::read_to_string(p.join("services/tool.toml")).unwrap();
    let text = text.split("[health]").next().unwrap().replace("volumes = [\"data:/data\"]\n", "");
    std::fs::write(p.join("services/tool.toml"), text).unwrap();
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\", \"tool\"]\n").unwrap();
    let h = &f.apply_ok()[0];
    eprintln!("second image on the same base: bytes_sent {} (busybox alone is {bb})", n(h, "bytes_sent"));
    assert!(n(h, "bytes_sent") < bb / 4, "the shared base's busybox was sent again: {h:#}");
    assert!(f.host_file(0, "/var/lib/drover/containers/tool/rootfs/usr/tool").is_file());

    // v1 -> v2 changes one file: plan names it, and only its bytes travel.
    app("2");
    let r = f.drover(&["plan"]);
    ok(&r);
    assert!(r.stdout.contains("/var/lib/drover/containers/app/rootfs/srv/index.html"), "{}", r.stdout);
    assert!(!r.stdout.contains("rootfs/bin/busybox"), "{}", r.stdout);
    let h = &f.apply_ok()[0];
    let file = "<h1>app 2</h1>\n".len() as u64;
    eprintln!(
        "v1 -> v2: blobs_sent {} bytes_sent {} (the changed file is {file} bytes)",
        n(h, "blobs_sent"),
        n(h, "bytes_sent")
    );
    assert_eq!(n(h, "blobs_sent"), 1, "{h:#}");
    assert!(n(h, "bytes_sent") <= file + 16, "one {file}-byte file (and its framing), not the image: {h:#}");
    assert!(wait_for_body(&addr, "<h1>app 2</h1>\n"));

    // A release whose entrypoint exits fails its health gate and is rolled
    // back: v2 answers again, the volume's data is intact.
    app("3");
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.hosts()[0]["outcome"], "rolled-back", "{}", r.stdout);
    assert!(wait_for_body(&addr, "<h1>app 2</h1>\n"));
    let r = f.drover(&["exec", "all", "--service", "app", "--", "cat", "/data/keep"]);
    assert!(r.code == 0 && r.stdout.contains("kept"), "{}\n{}", r.stdout, r.stderr);

    // The registry goes away: pinned, cached images still plan and apply;
    // a reference never pinned fails before any host is touched.
    app("2");
    drop(reg);
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "unchanged", "{h:#}");
    let snapshot = "find /var/lib/drover -maxdepth 2 | sort";
    // Read inside the host's namespace: `drover exec` would load the
    // project, which refuses the unpulled image too.
    let before = f.in_host(0, &["sh", "-c", snapshot]).stdout;
    service(&p, "app", "\"127.0.0.1:1/app:9\"", "");
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("services/app.toml")
            && r.stderr.contains("127.0.0.1:1/app:9")
            && r.stderr.contains("reach the registry"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(f.in_host(0, &["sh", "-c", snapshot]).stdout, before, "no host was touched");
    assert!(before.contains("/var/lib/drover/"), "{before}");
    assert!(http_get(&addr).is_some());
}

/// A signed bundle of a project with a registry image and a `docker save`
/// file carries both images' files; the host's own agent installs it from
/// a USB stick with the registry stopped (and no route to it anyway): both
/// containers come up.
#[test]
fn an_air_gapped_host_installs_registry_and_file_images_from_a_signed_bundle() {
    let reg = TestRegistry::start();
    let v1 = image("1", SERVE);
    push_all(&reg, &[("app:1", &v1)]);
    let f = Fleet::containers("img-gap", 1, Init::Runit);
    let p = f.project();
    std::fs::create_dir_all(p.join("images")).unwrap();
    let saved = image("filed", SERVE);
    write_docker_save(&p.join("images/app.tar"), &saved, "filed", "1");
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\", \"filed\"]\n").unwrap();
    service(&p, "app", &format!("{:?}", reg.reference("app:1")), "");
    // The file's image serves on 8081: the service's command replaces the
    // image's Cmd, its Entrypoint (busybox) stays.
    std::fs::write(
        p.join("services/filed.toml"),
        "image = { file = \"images/app.tar\" }\ncommand = [\"httpd\", \"-f\", \"-p\", \"8081\", \"-h\", \"/srv\"]\n[health]\nhttp = \"http://127.0.0.1:8081/\"\nretries = 8\ninterval = \"250ms\"\n",
    )
    .unwrap();

    let (_keys, bundle, public) = signed_bundle(&f);
    drop(reg);

    usb_stick(&f, 0, &bundle, &public, "");
    let r =
        f.in_host(0, &["/media/usb/drover-agent", "install", "/media/usb/site.drv", "--pubkey", "/media/usb/ops.pub"]);
    ok(&r);
    let ip = f.lab_hosts()[0].address;
    assert!(wait_for_body(&format!("{ip}:8080"), "<h1>app 1</h1>\n"), "the registry image's container");
    assert!(wait_for_body(&format!("{ip}:8081"), "<h1>app filed</h1>\n"), "the docker-save file's container");
}
