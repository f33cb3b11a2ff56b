//! `runtime = "docker"` (#29 item 2, docs/containers.md "Docker and Podman
//! runtimes") end to end through the real `drover` binary: the same app as
//! `containers/lab.rs`'s runc test (busybox httpd from an image directory,
//! volumes, limits, a health gate), on a container host whose dockerd runs
//! from Debian's docker.io (installed here as `docker.rs` does: drover
//! does not install engines).

use std::path::Path;

use drover_lab::Init;

use super::{install, ssh};
use crate::containers::{busybox_rootfs, http_get, wait_for_body};
use crate::support::Fleet;

const GOOD: &str = r#"["/bin/sh", "-c", "echo release up; exec httpd -f -p 8080 -h /www"]"#;
const BROKEN: &str = r#"["/bin/sh", "-c", "echo broken release; exit 1"]"#;

/// `containers/lab.rs`'s service `app`, with `runtime = "docker"`.
fn service(p: &Path, command: &str) {
    std::fs::write(
        p.join("services/app.toml"),
        format!(
            "image = {{ dir = \"images/app\" }}\nruntime = \"docker\"\ncommand = {command}\nuser = \"1000:1000\"\nvolumes = [\"data:/data\", \"cache:/cache\"]\nmemory = \"64M\"\npids = 64\nstop-grace-period = \"1s\"\n[health]\nhttp = \"http://127.0.0.1:8080/\"\nretries = 8\ninterval = \"250ms\"\n"
        ),
    )
    .unwrap();
}

fn n(h: &serde_json::Value, k: &str) -> u64 {
    h[k].as_u64().unwrap_or_else(|| panic!("no {k} in {h:#}"))
}

/// The engine's image of the running container `drover-app`.
fn running_image(f: &Fleet) -> String {
    ssh(f, 0, "docker inspect --format '{{.Config.Image}}' drover-app")
}

/// One runit host: an apply without docker fails naming the host and the
/// runtime; with dockerd running, the image service runs under docker
/// (imported from the shipped rootfs, never pulled) and answers, with
/// its limits and volumes; exec and logs reach it; a client killed
/// outright is replaced with its container; a one-file change ships that
/// file (and the `run` script naming the new image) and replaces the container with a new image; drain stops it; a
/// broken release is rolled back by the health gate to the old image,
/// volume data intact; `drover volume` works the same as under runc.
#[test]
fn an_image_service_runs_under_docker_upgrades_by_one_file_rolls_back_and_keeps_its_volumes() {
    let f = Fleet::containers("img-docker", 1, Init::Runit);
    let p = f.project();
    busybox_rootfs(&p.join("images/app"), "release 1\n");
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    service(&p, GOOD);
    let addr = format!("{}:8080", f.lab_hosts()[0].address);

    // No engine on the host: the service's start fails, its reason in the table.
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains(r#"has runtime = \"docker\" but there is no docker on this host (drover does not install it"#),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(!f.host_sh(0, "dpkg-query -W -f='${Status}' runc 2>&1 || true").contains("ok installed"), "no runc either");

    install(&f, 0, &["docker.io"]);
    ssh(
        &f,
        0,
        "setsid dockerd --iptables=false --ip6tables=false --bridge=none </dev/null >/run/dockerd.log 2>&1 & \
         for i in $(seq 100); do docker info >/dev/null 2>&1 && exit 0; sleep 0.2; done; tail /run/dockerd.log; exit 1",
    );
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(wait_for_body(&addr, "release 1\n"), "nothing answers at {addr}");
    let image1 = running_image(&f);
    assert!(image1.starts_with("localhost/drover/app:"), "{image1}");
    let data = f.host_file(0, "/var/lib/drover/volumes/app/data");
    let md = std::fs::metadata(&data).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&md), std::os::unix::fs::MetadataExt::gid(&md)), (1000, 1000));
    let limits = ssh(&f, 0, "docker inspect --format '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}' drover-app");
    assert_eq!(limits, "67108864 64");

    let r = f.drover(&["exec", "all", "--service", "app", "--", "sh", "-c", "echo kept > /data/keep; id -u"]);
    assert!(r.code == 0 && r.stdout.contains("1000"), "{}\n{}", r.stdout, r.stderr);
    let r = f.drover(&["logs", "app", "-n", "20"]);
    assert!(r.stdout.contains("release up"), "{}\n{}", r.stdout, r.stderr);

    // The supervisor's process is the docker client: killed outright, it
    // leaves its container to dockerd; the restart replaces that container.
    let pid = f.service_pid(0, "app");
    let ids = "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}'";
    let old = ssh(&f, 0, ids);
    ssh(&f, 0, &format!("kill -9 {pid}"));
    let start = std::time::Instant::now();
    let new = loop {
        let now = ssh(&f, 0, ids);
        if now != old && now.starts_with("drover-app ") && now.ends_with(" running") && !now.contains('\n') {
            break now;
        }
        assert!(start.elapsed().as_secs() < 15, "the restart replaces {old}: now {now}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_ne!(f.service_pid(0, "app"), pid, "runit restarted the client ({old} -> {new})");
    assert!(wait_for_body(&addr, "release 1\n"));

    std::fs::write(p.join("images/app/www/index.html"), "release 2\n").unwrap();
    let hosts = f.apply_ok();
    let h = &hosts[0];
    assert_eq!(h["outcome"], "changed", "{h:#}");
    // The changed file, and `run`, which names the new image's tag.
    assert_eq!(n(h, "blobs_sent"), 2, "{h:#}");
    assert!(n(h, "bytes_sent") < 4096, "one small file, not the 2 MB busybox: {h:#}");
    assert!(wait_for_body(&addr, "release 2\n"));
    let image2 = running_image(&f);
    assert_ne!(image2, image1, "a new image for new files");
    let mut tags = ssh(&f, 0, "docker image ls --format '{{.Repository}}:{{.Tag}}' localhost/drover/app");
    tags = tags.lines().rev().collect::<Vec<_>>().join(" ");
    assert_eq!(tags, format!("{image1} {image2}"), "the old image is kept for a rollback, nothing else is there");

    let r = f.drover(&["drain", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(http_get(&addr).is_none(), "a drained host's container is stopped");
    assert_eq!(ssh(&f, 0, "docker ps -a --format '{{.Names}}'"), "", "and removed");
    let r = f.drover(&["undrain", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(wait_for_body(&addr, "release 2\n"));

    service(&p, BROKEN);
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.hosts()[0]["outcome"], "rolled-back", "{}", r.stdout);
    assert!(wait_for_body(&addr, "release 2\n"));
    assert_eq!(running_image(&f), image2, "the old image runs again");
    let r = f.drover(&["exec", "all", "--service", "app", "--", "cat", "/data/keep"]);
    assert!(r.code == 0 && r.stdout.contains("kept"), "{}\n{}", r.stdout, r.stderr);

    service(&p, GOOD);
    let r = f.drover(&["volume", "ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}/{} {}", v["service"].as_str().unwrap(), v["volume"].as_str().unwrap(), v["owner"]))
        .collect();
    assert_eq!(names, ["app/cache \"1000:1000\"", "app/data \"1000:1000\""], "{}", r.stdout);
    let r = f.drover(&["volume", "rm", "app", "data"]);
    assert!(r.code != 0 && r.stderr.contains("is running"), "{}\n{}", r.stdout, r.stderr);
    std::fs::write(p.join("roles/site.toml"), "services = []\n").unwrap();
    f.apply_ok();
    assert!(http_get(&addr).is_none(), "the removed service's container is stopped");
    assert_eq!(ssh(&f, 0, "docker ps -a --format '{{.Names}}'"), "");
    assert!(data.join("keep").is_file(), "removing the service keeps its volumes");
    let r = f.drover(&["volume", "rm", "app", "data", "--host", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!data.exists());
    assert!(f.host_file(0, "/var/lib/drover/volumes/app/cache").is_dir(), "only the volume named goes");
}

/// `runtime = "podman"` on a runit host with Debian's podman (its store
/// moved to the host's non-overlay store): the service runs and answers,
/// exec and logs reach it, a one-file change runs a new image, and removing the
/// service stops and removes its container.
#[test]
#[ignore = "slow (podman's dpkg, ~35 s): cargo test -p drover --features drover/agent-test-hooks,drover-agent/test-hooks --test it -- --ignored lab_containers::engine::an_image_service_runs_under_podman"]
fn an_image_service_runs_under_podman() {
    let f = Fleet::containers("img-podman", 1, Init::Runit);
    let p = f.project();
    busybox_rootfs(&p.join("images/app"), "release 1\n");
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    service(&p, GOOD);
    let svc = p.join("services/app.toml");
    std::fs::write(&svc, std::fs::read_to_string(&svc).unwrap().replace("\"docker\"", "\"podman\"")).unwrap();
    let addr = format!("{}:8080", f.lab_hosts()[0].address);
    install(&f, 0, &["podman"]);
    ssh(
        &f,
        0,
        "mkdir -p /etc/containers /var/lib/docker/podman && printf '[storage]\\ndriver = \"overlay\"\\ngraphroot = \"/var/lib/docker/podman\"\\nrunroot = \"/run/containers/storage\"\\n' > /etc/containers/storage.conf && podman version",
    );
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(wait_for_body(&addr, "release 1\n"), "nothing answers at {addr}");
    let r = f.drover(&["exec", "all", "--service", "app", "--", "id", "-u"]);
    assert!(r.code == 0 && r.stdout.contains("1000"), "{}\n{}", r.stdout, r.stderr);
    let r = f.drover(&["logs", "app", "-n", "20"]);
    assert!(r.stdout.contains("release up"), "{}\n{}", r.stdout, r.stderr);
    let image1 = ssh(&f, 0, "podman inspect --format '{{.ImageName}}' drover-app");
    assert!(image1.starts_with("localhost/drover/app:"), "{image1}");
    std::fs::write(p.join("images/app/www/index.html"), "release 2\n").unwrap();
    f.apply_ok();
    assert!(wait_for_body(&addr, "release 2\n"));
    assert_ne!(ssh(&f, 0, "podman inspect --format '{{.ImageName}}' drover-app"), image1);
    std::fs::write(p.join("roles/site.toml"), "services = []\n").unwrap();
    f.apply_ok();
    assert!(http_get(&addr).is_none(), "the removed service's container is stopped");
    assert_eq!(ssh(&f, 0, "podman ps -a --format '{{.Names}}'"), "");
}
