//! Image services on container-capable lab hosts (`Fleet::containers`:
//! no runc installed), through the real `drover` binary: runc arrives in
//! the package closure, the container answers on the host's address, an
//! image change ships only the changed file and restarts it, a broken
//! release is rolled back with its volume's data intact, logs and exec
//! reach the container, and volumes go only when `drover volume rm` says.

use std::path::Path;

use drover_lab::Init;

use super::{busybox_rootfs, http_get, wait_for_body};
use crate::support::Fleet;

/// The project's one role runs image service `app` (busybox httpd on port
/// 8080 of the host, a shell first so that each release logs a line).
fn image_project(f: &Fleet, command: &str) {
    let p = f.project();
    let _ = std::fs::remove_dir_all(p.join("images/app"));
    busybox_rootfs(&p.join("images/app"), "release 1\n");
    std::fs::write(p.join("roles/site.toml"), "services = [\"app\"]\n").unwrap();
    service(&p, command);
}

fn service(p: &Path, command: &str) {
    std::fs::write(
        p.join("services/app.toml"),
        format!(
            "image = {{ dir = \"images/app\" }}\ncommand = {command}\nuser = \"1000:1000\"\nvolumes = [\"data:/data\", \"cache:/cache\"]\nmemory = \"64M\"\npids = 64\nstop-grace-period = \"1s\"\n[health]\nhttp = \"http://127.0.0.1:8080/\"\nretries = 8\ninterval = \"250ms\"\n"
        ),
    )
    .unwrap();
}

const GOOD: &str = r#"["/bin/sh", "-c", "echo release up; exec httpd -f -p 8080 -h /www"]"#;
const BROKEN: &str = r#"["/bin/sh", "-c", "echo broken release; exit 1"]"#;

fn n(h: &serde_json::Value, k: &str) -> u64 {
    h[k].as_u64().unwrap_or_else(|| panic!("no {k} in {h:#}"))
}

/// One runit host without runc: the whole life of an image service.
#[test]
fn an_image_service_runs_under_runc_upgrades_by_one_file_rolls_back_and_keeps_its_volumes() {
    let f = Fleet::containers("img-life", 1, Init::Runit);
    image_project(&f, GOOD);
    let addr = format!("{}:8080", f.lab_hosts()[0].address);

    // First apply: runc comes in the package closure, the container
    // answers on the host's address (host network).
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(f.host_sh(0, "dpkg-query -W -f='${Status}' runc").contains("install ok installed"));
    assert!(wait_for_body(&addr, "release 1\n"), "nothing answers at {addr}");
    let data = f.host_file(0, "/var/lib/drover/volumes/app/data");
    let md = std::fs::metadata(&data).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&md), std::os::unix::fs::MetadataExt::gid(&md)), (1000, 1000));
    // The limits hold, in the container's cgroup below the host's own.
    let limits = f.host_sh(
        0,
        "cat /sys/fs/cgroup/memory/drover/app/memory.limit_in_bytes /sys/fs/cgroup/pids/drover/app/pids.max",
    );
    assert_eq!(limits.split_whitespace().collect::<Vec<_>>(), ["67108864", "64"], "{limits}");

    // exec and logs reach the container.
    let r = f.drover(&["exec", "all", "--service", "app", "--", "sh", "-c", "echo kept > /data/keep; id -u"]);
    assert!(r.code == 0 && r.stdout.contains("1000"), "{}\n{}", r.stdout, r.stderr);
    let r = f.drover(&["logs", "app", "-n", "20"]);
    assert!(r.stdout.contains("release up"), "{}\n{}", r.stdout, r.stderr);

    // One file of the image changes: only its bytes travel, the container
    // restarts (the rootfs is its trigger) and serves the new page.
    std::fs::write(f.project().join("images/app/www/index.html"), "release 2\n").unwrap();
    let hosts = f.apply_ok();
    let h = &hosts[0];
    assert_eq!(h["outcome"], "changed", "{h:#}");
    assert_eq!(n(h, "blobs_sent"), 1, "{h:#}");
    assert!(n(h, "bytes_sent") < 4096, "one small file, not the 2 MB busybox: {h:#}");
    assert!(wait_for_body(&addr, "release 2\n"));

    // Drain stops the container like any service; undrain starts it again.
    let r = f.drover(&["drain", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(http_get(&addr).is_none(), "a drained host's container is stopped");
    let r = f.drover(&["undrain", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(wait_for_body(&addr, "release 2\n"));

    // A release whose entrypoint exits fails its health gate and is rolled
    // back: release 2 answers again, the volume's data is intact.
    service(&f.project(), BROKEN);
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.hosts()[0]["outcome"], "rolled-back", "{}", r.stdout);
    assert!(wait_for_body(&addr, "release 2\n"));
    let r = f.drover(&["exec", "all", "--service", "app", "--", "cat", "/data/keep"]);
    assert!(r.code == 0 && r.stdout.contains("kept"), "{}\n{}", r.stdout, r.stderr);

    // Volumes: listed; not removed while the container runs; removing the
    // service leaves them; `volume rm` removes exactly the one named.
    service(&f.project(), GOOD);
    let r = f.drover(&["volume", "ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{}/{} {}",
                v["service"].as_str().unwrap(),
                v["volume"].as_str().unwrap(),
                v["owner"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["app/cache 1000:1000", "app/data 1000:1000"], "{}", r.stdout);
    let r = f.drover(&["volume", "rm", "app", "data"]);
    assert!(r.code != 0 && r.stderr.contains("is running"), "{}\n{}", r.stdout, r.stderr);
    assert!(data.join("keep").is_file());
    std::fs::write(f.project().join("roles/site.toml"), "services = []\n").unwrap();
    f.apply_ok();
    assert!(http_get(&addr).is_none(), "the removed service's container is stopped");
    assert!(data.join("keep").is_file(), "removing the service keeps its volumes");
    let r = f.drover(&["volume", "rm", "app", "data", "--host", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!data.exists());
    assert!(f.host_file(0, "/var/lib/drover/volumes/app/cache").is_dir(), "only the volume named goes");
}

/// A systemd host runs an image service's instances, one container each
/// on its own port, each gated by a health command run inside its
/// container; systemd's ExecStop stops them when the service goes.
#[test]
fn image_service_instances_run_on_a_systemd_host_with_health_commands_inside() {
    let f = Fleet::containers("img-sd", 1, Init::Systemd);
    image_project(&f, r#"["/bin/sh", "-c", "exec httpd -f -p {{ instance.ports.http }} -h /www"]"#);
    let text = std::fs::read_to_string(f.project().join("services/app.toml")).unwrap();
    // `wget` exists only inside the image: a health command run on the host would fail.
    let text = text
        .replace(
            "http = \"http://127.0.0.1:8080/\"",
            "command = \"wget -q -O /dev/null http://127.0.0.1:{{ instance.ports.http }}/\"",
        )
        .replace("stop-grace-period", "instances = 2\nstop-grace-period");
    std::fs::write(f.project().join("services/app.toml"), format!("{text}[ports]\nhttp = \"8100-8199\"\n")).unwrap();
    assert!(!f.host_file(0, "/bin/wget").exists() && !f.host_file(0, "/usr/bin/wget").exists());
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    let ip = f.lab_hosts()[0].address;
    for port in [8100, 8101] {
        assert!(wait_for_body(&format!("{ip}:{port}"), "release 1\n"), "instance on {port}");
    }
    let r = f.drover(&["exec", "all", "--service", "app-1", "--", "cat /proc/1/cmdline"]);
    assert!(r.code == 0 && r.stdout.contains("8101"), "{}\n{}", r.stdout, r.stderr);
    std::fs::write(f.project().join("roles/site.toml"), "services = []\n").unwrap();
    f.apply_ok();
    for port in [8100, 8101] {
        assert!(http_get(&format!("{ip}:{port}")).is_none(), "systemd's ExecStop stopped instance on {port}");
    }
}

/// Magic rollback of an image upgrade: release 2 of the image ships with a
/// change that locks root out of SSH, nobody can confirm it, and the host
/// reverts by itself, container included: release 1 answers again.
#[test]
fn an_image_upgrade_that_breaks_ssh_reverts_itself_container_included() {
    let f = Fleet::containers("img-magic", 1, Init::Runit);
    image_project(&f, GOOD);
    std::fs::create_dir_all(f.project().join("layers/keys/etc")).unwrap();
    std::fs::write(f.project().join("layers/keys/etc/image-test"), "x\n").unwrap();
    std::fs::write(f.project().join("roles/site.toml"), "layers = [\"keys\"]\nservices = [\"app\"]\n").unwrap();
    f.apply_ok();
    let addr = format!("{}:8080", f.lab_hosts()[0].address);
    assert!(wait_for_body(&addr, "release 1\n"));
    let pid = f.service_pid(0, "app");
    std::fs::write(f.project().join("images/app/www/index.html"), "release 2\n").unwrap();
    let keys = f.lock_root_out(0, &f.project().join("layers/keys"));
    let r = f.apply_json(&["--confirm-timeout", "4s"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.hosts()[0]["error"].as_str().unwrap().contains("reverts it by itself"), "{}", r.stdout);
    f.wait_keys_restored(0, &keys);
    assert!(wait_for_body(&addr, "release 1\n"), "the reverted generation's container answers");
    let index = f.host_file(0, "/var/lib/drover/containers/app/rootfs/www/index.html");
    assert_eq!(std::fs::read_to_string(index).unwrap(), "release 1\n");
    assert_ne!(f.service_pid(0, "app"), pid, "restarted on release 2, and again on the revert");
}
