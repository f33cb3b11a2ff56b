//! The bytes-per-upgrade figure of #29 (bench/containers.sh runs it; it is
//! `#[ignore]`d: minutes, and a dockerd): the same two versions of an
//! image, from one test registry, shipped to a container host by drover
//! (`--json` bytes_sent) and pulled by `docker pull` (the host's interface
//! counters around the pull). Two families: the busybox test images (v2
//! changes one 15-byte page), and a Debian image (the lab's cached
//! debootstrap base as one layer; an app layer with a C server and 2 MB of
//! assets, v2 rebuilt after a one-line change).
//!
//! dockerd runs on the lab host only, never on the controller (it would
//! set FORWARD to DROP and cut the lab bridges).

use std::path::Path;
use std::process::Command;

use drover_lab::Init;
use drover_oci::testing::images::{app_layer, base_layer, push, Compression, LayerBuilder, TestImage};
use drover_oci::testing::registry::TestRegistry;
use serde_json::json;

use super::{install, ssh};
use crate::support::Fleet;

/// `tar` of a directory as a layer (numeric owners, as a build would),
/// without the lab's own user's home (`/home/op`, uid 1000: not part of a
/// Debian image, and the agent refuses to write under a directory a
/// non-root user owns).
fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "--sort=name", "--exclude=./home/op", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "tar {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The app: a C program built with the controller's gcc, its version a
/// one-line change, beside 2 MB of assets that do not change.
fn app_layer_debian(work: &Path, version: &str) -> Vec<u8> {
    let src = work.join("server.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\nstatic const char *VERSION = \"{version}\";\nint main(void) {{ printf(\"app %s\\n\", VERSION); fflush(stdout); for (;;) pause(); }}\n"
        ),
    )
    .unwrap();
    let bin = work.join("server");
    let st = Command::new("gcc").args(["-O2", "-o"]).arg(&bin).arg(&src).status().unwrap();
    assert!(st.success(), "gcc");
    let mut assets = Vec::with_capacity(2 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while assets.len() < 2 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assets.extend_from_slice(&x.to_le_bytes());
    }
    LayerBuilder::new()
        .dir("app", 0o755)
        .file("app/server", 0o755, &std::fs::read(&bin).unwrap())
        .dir("app/static", 0o755)
        .file("app/static/bundle.bin", 0o644, &assets)
        .build()
}

/// The lab's cached Debian base (debootstrap, bookworm), as one layer.
fn debian_base() -> Vec<u8> {
    let cache = Path::new("/var/cache/drover-lab");
    let mut bases: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_str().unwrap().starts_with("base-bookworm-"))
        .filter(|p| !p.to_str().unwrap().contains("arm64") && p.join("etc/debian_version").is_file())
        .collect();
    bases.sort();
    tar_dir(bases.first().expect("a cached Debian base under /var/cache/drover-lab (run any lab test once)"))
}

/// Bytes received on the host's interfaces while `command` runs.
fn rx_during(f: &Fleet, command: &str) -> u64 {
    let rx = "cat /sys/class/net/*/statistics/rx_bytes | awk '{s+=$1} END {print s}'";
    let out = ssh(f, 0, &format!("a=$({rx}); {command} >/dev/null 2>&1 || exit 1; b=$({rx}); echo $((b - a))"));
    out.trim().parse().unwrap_or_else(|_| panic!("{out}"))
}

/// One apply's bytes sent, or why it failed (with `plan`'s word on it).
fn bytes_sent(f: &Fleet, step: &str) -> Result<u64, String> {
    eprintln!("bench: {step}");
    let r = f.apply_json(&[]);
    if r.code != 0 {
        let plan = f.drover(&["plan"]);
        std::fs::write(
            std::env::temp_dir().join("drover-bench-containers-failure.txt"),
            format!("{}\n{}\n{}\n{}", r.stdout, r.stderr, plan.stdout, plan.stderr),
        )
        .unwrap();
        return Err(format!(
            "{step}: apply failed:\n{}\n{}\nplan:\n{}\n{}",
            r.stdout, r.stderr, plan.stdout, plan.stderr
        ));
    }
    let h = &r.hosts()[0];
    h["bytes_sent"].as_u64().ok_or_else(|| format!("{h:#}"))
}

/// Prints the table bench/containers.sh keeps.
#[test]
#[ignore = "a benchmark: minutes, a dockerd on a lab host (bench/containers.sh)"]
fn bytes_per_image_upgrade_drover_vs_docker_pull() {
    let f = Fleet::containers("img-bench", 1, Init::Runit);
    let controller: std::net::IpAddr = ssh(&f, 0, "echo ${SSH_CLIENT%% *}").parse().unwrap();
    let reg = TestRegistry::start_at(controller);
    let work = tempfile::tempdir().unwrap();
    let busy_cfg = json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["sleep", "100000"]});
    let deb_cfg = json!({"Cmd": ["/app/server"]});
    let deb = debian_base();
    let families = [
        (
            "busybox",
            TestImage::oci("amd64", vec![base_layer(), app_layer("1")], Compression::Gzip, busy_cfg.clone()),
            TestImage::oci("amd64", vec![base_layer(), app_layer("2")], Compression::Gzip, busy_cfg),
        ),
        (
            "debian",
            TestImage::oci(
                "amd64",
                vec![deb.clone(), app_layer_debian(work.path(), "1.4.0")],
                Compression::Gzip,
                deb_cfg.clone(),
            ),
            TestImage::oci("amd64", vec![deb, app_layer_debian(work.path(), "1.4.1")], Compression::Gzip, deb_cfg),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (name, v1, v2) in &families {
        rt.block_on(push(&reg.reference(&format!("{name}:1")), v1));
        rt.block_on(push(&reg.reference(&format!("{name}:2")), v2));
    }

    // drover: runc first (its packages are not the image's bytes), then
    // each image's v1 (whole) and v1 -> v2; then docker pull of the same
    // two versions from the same registry.
    let p = f.project();
    let toml = p.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[registries.\"{}\"]\ninsecure = true\n", reg.host())).unwrap();
    std::fs::write(p.join("roles/site.toml"), "packages = [\"runc\"]\n").unwrap();
    bytes_sent(&f, "runc").unwrap();
    install(&f, 0, &["docker.io"]);
    ssh(
        &f,
        0,
        &format!(
            "setsid dockerd --iptables=false --ip6tables=false --bridge=none --insecure-registry {} </dev/null >/run/dockerd.log 2>&1 & \
             for i in $(seq 100); do docker info >/dev/null 2>&1 && exit 0; sleep 0.2; done; tail /run/dockerd.log; exit 1",
            reg.host()
        ),
    );
    println!("| image | uncompressed layers | drover v1 (whole) | docker pull v1 | drover v1→v2 | docker pull v1→v2 |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut failed = Vec::new();
    for (name, v1, _) in &families {
        let uncompressed: usize = v1.tars.iter().map(Vec::len).sum();
        let service = |tag: &str| {
            std::fs::write(
                p.join(format!("services/{name}.toml")),
                format!("image = {:?}\n", reg.reference(&format!("{name}:{tag}"))),
            )
            .unwrap();
        };
        service("1");
        std::fs::write(p.join("roles/site.toml"), format!("packages = [\"runc\"]\nservices = [\"{name}\"]\n")).unwrap();
        let whole = bytes_sent(&f, &format!("{name} v1"));
        service("2");
        let upgrade = whole.as_ref().map_err(Clone::clone).and_then(|_| bytes_sent(&f, &format!("{name} v2")));
        std::fs::write(p.join("roles/site.toml"), "packages = [\"runc\"]\n").unwrap();
        let _ = bytes_sent(&f, &format!("{name} removed"));
        let d1 = rx_during(&f, &format!("docker pull {}", reg.reference(&format!("{name}:1"))));
        let d2 = rx_during(&f, &format!("docker pull {}", reg.reference(&format!("{name}:2"))));
        let show = |r: &Result<u64, String>| r.as_ref().map_or("failed".to_string(), u64::to_string);
        println!("| {name} | {uncompressed} | {} | {d1} | {} | {d2} |", show(&whole), show(&upgrade));
        failed.extend(whole.err());
        failed.extend(upgrade.err());
    }
    ssh(
        &f,
        0,
        "kill $(cat /var/run/docker.pid); for i in $(seq 50); do [ -e /var/run/docker.pid ] || exit 0; sleep 0.2; done",
    );
    assert!(failed.is_empty(), "{failed:#?}");
}
