//! dockerd in a container host (`runtime = "docker"`, #29 item 2): Debian's
//! docker.io installed from the controller's packages, its store on the
//! host's store (off the overlay), an image built here by hand (no
//! registry, no internet) and loaded with `docker load`.

use std::fs;
use std::path::Path;
use std::process::Command;

use drover_lab::Init;
use sha2::{Digest, Sha256};

use super::{busybox_rootfs, down_leaves_nothing, http_get, install, scp, ssh, wait_http};
use crate::support::Fleet;

const PORT: u16 = 18081;
const IMAGE: &str = "drover-test/web:1";

/// A `docker save` archive of one image, built without docker: a layer
/// (a tar of a busybox rootfs), its config (the layer's digest as its
/// diff id, httpd on [`PORT`] as its command) and `manifest.json`, the
/// format `docker load` reads.
fn docker_save_archive(dir: &Path) -> std::path::PathBuf {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs, "hello from docker");
    let out = dir.join("image");
    fs::create_dir_all(out.join("layer")).unwrap();
    let tar = |args: &[&str], cwd: &Path| {
        assert!(Command::new("tar").args(args).current_dir(cwd).status().unwrap().success(), "tar {args:?}");
    };
    tar(&["--owner=0", "--group=0", "-cf", out.join("layer/layer.tar").to_str().unwrap(), "."], &rootfs);
    let diff_id = format!("{:x}", Sha256::digest(fs::read(out.join("layer/layer.tar")).unwrap()));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["/bin/sh", "-c", format!("echo started > /data/started; exec /bin/busybox httpd -f -p {PORT} -h /www")],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "drover lab_containers test"}],
    })
    .to_string();
    let config_name = format!("{:x}.json", Sha256::digest(config.as_bytes()));
    fs::write(out.join(&config_name), &config).unwrap();
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [IMAGE], "Layers": ["layer/layer.tar"]}]);
    fs::write(out.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = dir.join("web-image.tar");
    tar(&["-cf", archive.to_str().unwrap(), "manifest.json", &config_name, "layer"], &out);
    archive
}

/// On a container host with docker.io installed from the controller's
/// packages (none is there before), a dockerd started as the issue says
/// (`--iptables=false`, no bridge: it never touches a firewall) keeps its
/// images on the host's store (ext4, not the overlay, so its overlay2
/// driver works), `docker load`s an archive built by the test, and `docker
/// run --network host` of it answers on the host's address and writes to
/// a bind-mounted store directory; `docker rm -f` stops it; `lab down`
/// with dockerd and a container running leaves nothing behind.
#[test]
fn dockerd_loads_and_runs_an_image_on_a_container_host() {
    let f = Fleet::containers("ctr-docker", 1, Init::Runit);
    install(&f, 0, &["docker.io"]);
    let archive = docker_save_archive(&f.project());
    scp(&f, 0, &[archive], "/root/image");
    ssh(
        &f,
        0,
        "setsid dockerd --iptables=false --ip6tables=false --bridge=none </dev/null >/run/dockerd.log 2>&1 & \
         for i in $(seq 100); do docker info >/dev/null 2>&1 && exit 0; sleep 0.2; done; tail /run/dockerd.log; exit 1",
    );
    assert_eq!(ssh(&f, 0, "docker info --format '{{.Driver}} {{.DockerRootDir}}'"), "overlay2 /var/lib/docker");
    assert!(ssh(&f, 0, "docker load -i /root/image/web-image.tar").contains(&format!("Loaded image: {IMAGE}")));
    ssh(
        &f,
        0,
        &format!(
            "mkdir -p /var/lib/drover-containers/web && docker run -d --name web --network host \
         -v /var/lib/drover-containers/web:/data {IMAGE}"
        ),
    );
    assert_eq!(wait_http(&f, 0, PORT, "/index.html"), "hello from docker");
    assert_eq!(ssh(&f, 0, "cat /var/lib/drover-containers/web/started"), "started");
    ssh(&f, 0, "docker rm -f web");
    assert!(http_get(&f, 0, PORT, "/index.html").is_err(), "the port closes with the container");
    ssh(&f, 0, &format!("docker run -d --name web2 --network host -v /var/lib/drover-containers/web:/data {IMAGE}"));
    wait_http(&f, 0, PORT, "/index.html");
    down_leaves_nothing(&f);
}
