//! `runtime = "docker"` with what real fleets have (#29 item 2, "the same
//! app under `runtime = "docker"` on a host with dockerd"): a registry
//! image (pulled by the controller from the test registry, never by the
//! host), a health command that runs inside the container, magic rollback,
//! and the supervisors other than runit (systemd's unit, OpenRC's
//! supervise-daemon) driving the docker client.

use std::path::Path;

use drover_lab::Init;
use drover_oci::testing::images::{base_layer, push, Compression, LayerBuilder, TestImage};
use drover_oci::testing::registry::TestRegistry;
use serde_json::json;

use super::{ssh, ssh_try};
use crate::containers::{http_get, wait_for_body};
use crate::support::Fleet;

/// Release `version` of the app: busybox (with `wget`) and `/srv/index.html`
/// saying so; `index = false` leaves the page out, so httpd runs and
/// answers but `/index.html` is a 404: the health command fails while the
/// container's process stays up.
fn image(version: &str, index: bool) -> TestImage {
    let mut app = LayerBuilder::new().dir("srv", 0o755);
    if index {
        app = app.file("srv/index.html", 0o644, format!("<h1>app {version}</h1>\n").as_bytes());
    }
    app = app.file("srv/release", 0o644, version.as_bytes());
    let config = json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/srv"],
                        "Env": ["PATH=/bin"], "User": "nobody", "WorkingDir": "/srv"});
    TestImage::oci("amd64", vec![base_layer(), app.build()], Compression::Gzip, config)
}

/// A registry holding `app:1`, `app:2` and `app:3` (3 has no index page).
fn registry() -> TestRegistry {
    let reg = TestRegistry::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (tag, i) in [("app:1", image("1", true)), ("app:2", image("2", true)), ("app:3", image("3", false))] {
        rt.block_on(push(&reg.reference(tag), &i));
    }
    reg
}

/// Service `app`: `tag` of the registry's app under docker, gated by a
/// health command that only the container can run (the host has no
/// `wget`, the image has).
fn service(p: &Path, reg: &TestRegistry, tag: &str) {
    std::fs::write(
        p.join("services/app.toml"),
        format!(
            "image = {:?}\nruntime = \"docker\"\nafter = [\"docker\"]\nvolumes = [\"data:/data\"]\nstop-grace-period = \"1s\"\n[health]\ncommand = \"wget -q -O /dev/null http://127.0.0.1:8080/index.html\"\nretries = 12\ninterval = \"250ms\"\n",
            reg.reference(&format!("app:{tag}"))
        ),
    )
    .unwrap();
}

/// The project: role `site` with docker.io in its packages (drover ships
/// and installs it; its maintainer scripts start nothing), dockerd as
/// service `docker` (`docker`: its file's text) configured by a layer's
/// `/etc/docker/daemon.json` (no firewall, no bridge: the lab's rule), and
/// `app` at release 1 started after it. Layer `keys` is there for the
/// magic rollback.
fn docker_project(p: &Path, reg: &TestRegistry, docker: &str) {
    std::fs::create_dir_all(p.join("layers/docker/etc/docker")).unwrap();
    std::fs::write(
        p.join("layers/docker/etc/docker/daemon.json"),
        "{\"iptables\": false, \"ip6tables\": false, \"bridge\": \"none\"}\n",
    )
    .unwrap();
    std::fs::create_dir_all(p.join("layers/keys/etc")).unwrap();
    std::fs::write(p.join("layers/keys/etc/docker-test"), "x\n").unwrap();
    site(p, &["docker", "app"]);
    std::fs::write(p.join("services/docker.toml"), docker).unwrap();
    service(p, reg, "1");
}

/// Role `site` runs `services`.
fn site(p: &Path, services: &[&str]) {
    std::fs::write(
        p.join("roles/site.toml"),
        format!("layers = [\"docker\", \"keys\"]\npackages = [\"docker.io\"]\nservices = {services:?}\n"),
    )
    .unwrap();
}

/// The engine's image and id of the running container `drover-app`.
fn running(f: &Fleet) -> (String, String) {
    let out = ssh(f, 0, "docker inspect --format '{{.Config.Image}} {{.Id}}' drover-app");
    let (image, id) = out.split_once(' ').unwrap();
    (image.to_string(), id.to_string())
}

fn no_wget_on_the_host(f: &Fleet) {
    for p in ["/bin/wget", "/usr/bin/wget"] {
        assert!(!f.host_file(0, p).exists(), "{p} on the host: the health command would not prove it runs inside");
    }
}

/// One systemd container host, docker.io and all from the project as an
/// operator would write it (`docker_project`): a registry image runs
/// under systemd's unit for the docker client and answers; its health
/// command runs inside the container; an upgrade runs the new image; a
/// release whose health command fails (its process up, its page gone) is
/// rolled back and the previous image answers again, with the volume's
/// data; an upgrade that locks root out of SSH reverts by itself,
/// container included (the previous image in a new container); systemd
/// stops, restarts and shuts it down cleanly
/// (`systemd_stops_restarts_and_shuts_down_cleanly`); removing the service
/// stops the unit and the container and keeps the volume.
#[test]
fn a_registry_image_under_docker_on_systemd_is_health_gated_inside_rolls_back_and_reverts_by_itself() {
    let reg = registry();
    let f = Fleet::containers("dk-sd", 1, Init::Systemd);
    let p = f.project();
    no_wget_on_the_host(&f);
    docker_project(&p, &reg, "unit = \"docker\"\n");
    let addr = format!("{}:8080", f.lab_hosts()[0].address);

    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(wait_for_body(&addr, "<h1>app 1</h1>\n"), "nothing answers at {addr}");
    assert_eq!(ssh(&f, 0, "systemctl is-active docker app"), "active\nactive");
    assert!(ssh(&f, 0, "dpkg-query -W -f='${Status}' docker.io").contains("install ok installed"));
    let main = f.service_pid(0, "app");
    let cmdline = ssh(&f, 0, &format!("tr '\\0' ' ' < /proc/{main}/cmdline"));
    assert!(cmdline.starts_with("docker run --rm --name drover-app "), "systemd's main process: {cmdline}");
    let (image1, _) = running(&f);
    assert!(image1.starts_with("localhost/drover/app:"), "{image1}");
    let r = f.drover(&["exec", "all", "--service", "app", "--", "sh", "-c", "echo kept > /data/keep; id -u"]);
    assert!(r.code == 0 && r.stdout.contains("65534"), "{}\n{}", r.stdout, r.stderr);

    service(&p, &reg, "2");
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "changed", "{h:#}");
    assert!(wait_for_body(&addr, "<h1>app 2</h1>\n"));
    let (image2, id2) = running(&f);
    assert_ne!(image2, image1);

    // Release 3 serves no page: httpd is up, the health command fails.
    service(&p, &reg, "3");
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.hosts()[0]["outcome"], "rolled-back", "{}", r.stdout);
    let error = r.hosts()[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("health command `") && error.contains("docker exec --user 65534:65534 drover-app wget"),
        "{error}"
    );
    assert!(wait_for_body(&addr, "<h1>app 2</h1>\n"), "release 2 answers again");
    assert_eq!(running(&f).0, image2, "the previous image runs again");
    let r = f.drover(&["exec", "all", "--service", "app", "--", "cat", "/data/keep", "/srv/release"]);
    assert!(r.code == 0 && r.stdout.contains("kept\n2"), "{}\n{}", r.stdout, r.stderr);
    assert_ne!(running(&f).1, id2, "release 3 ran in between");

    // Release 1 again, with a layer that locks root out: nobody confirms,
    // the host reverts by itself to release 2's generation and container.
    service(&p, &reg, "1");
    let keys = f.lock_root_out(0, &p.join("layers/keys"));
    let r = f.apply_json(&["--confirm-timeout", "4s"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts()[0]["error"].as_str().unwrap().contains("reverts it by itself"), "{}", r.stdout);
    f.wait_keys_restored(0, &keys);
    assert!(wait_for_body(&addr, "<h1>app 2</h1>\n"), "the reverted generation's container answers");
    let index = f.host_file(0, "/var/lib/drover/containers/app/rootfs/srv/index.html");
    assert_eq!(std::fs::read_to_string(index).unwrap(), "<h1>app 2</h1>\n");
    let start = std::time::Instant::now();
    while running(&f).0 != image2 {
        assert!(start.elapsed().as_secs() < 20, "the reverted container runs {:?}, not {image2}", running(&f));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(ssh(&f, 0, "docker ps -a --format '{{.Names}}'"), "drover-app", "one container");
    assert!(f.host_file(0, "/var/lib/drover/volumes/app/data/keep").is_file());

    systemd_stops_restarts_and_shuts_down_cleanly(&f, &addr);

    std::fs::remove_dir_all(p.join("layers/keys/root")).unwrap();
    site(&p, &["docker"]);
    f.apply_ok();
    assert!(http_get(&addr).is_none(), "the removed service's container is stopped");
    assert_eq!(ssh(&f, 0, "docker ps -a --format '{{.Names}}'"), "", "and removed");
    let (active, state, _) = ssh_try(&f, 0, "systemctl is-active app");
    assert!(!active && state != "active", "systemd's unit is stopped: {state}");
    assert!(f.host_file(0, "/var/lib/drover/volumes/app/data/keep").is_file(), "the volume is kept");
}

/// systemd and dockerd around the service on host h1 (answering at
/// `addr`): a drain's stop is a stop, not a failure (the container's end
/// by `stop` exits 137); dockerd gone for longer than systemd's default
/// start limit (5 starts in 10 s), the unit keeps trying and the service
/// answers again when dockerd is back; a shutdown's stop of dockerd and the
/// service in one transaction stops the service first, by its own `stop`
/// (its 1 s grace), not dockerd's 10 s kill.
fn systemd_stops_restarts_and_shuts_down_cleanly(f: &Fleet, addr: &str) {
    let r = f.drover(&["drain", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = f.drover(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let services = status[0]["services"].as_array().unwrap();
    let app = services.iter().find(|s| s["name"] == "app").unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(app["state"], "down", "a drained service is down, not failed: {status:#}");
    let r = f.drover(&["undrain", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(wait_for_body(addr, "<h1>app 2</h1>\n"));

    ssh(f, 0, "systemctl stop docker.socket docker.service");
    let show = "systemctl show app --property=ActiveState,NRestarts";
    let start = std::time::Instant::now();
    loop {
        let now = ssh(f, 0, show);
        let prop = |k: &str| now.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_default().to_string();
        if prop("ActiveState=") == "failed" || prop("NRestarts=").parse::<u32>().unwrap_or(0) >= 10 {
            break;
        }
        assert!(start.elapsed().as_secs() < 40, "app restarting without dockerd: {now}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    ssh(f, 0, "systemctl start docker.service");
    assert!(wait_for_body(addr, "<h1>app 2</h1>\n"), "back by itself with dockerd: {}", ssh(f, 0, show));

    // A shutdown's one transaction, as shutdown.target makes it: stop jobs
    // for all three at once, ordered only by the units' own dependencies.
    // (`systemctl stop A B C` is a transaction per unit: a job already
    // running is not ordered after one queued later.)
    ssh(
        f,
        0,
        "printf '[Unit]\\nConflicts=app.service docker.service docker.socket\\nAfter=app.service docker.service docker.socket\\n' \
         > /etc/systemd/system/halt-test.target && systemctl daemon-reload",
    );
    let t = std::time::Instant::now();
    ssh(f, 0, "systemctl start halt-test.target");
    let took = t.elapsed();
    let journal = "systemctl show app --property=Result,ExecMainStatus; journalctl -u app -o cat --no-pager -n 12";
    let why = ssh(f, 0, journal);
    assert!(why.contains("Result=success"), "stopped cleanly ({took:?}): {why}");
    assert!(took.as_secs_f64() < 6.0, "the service's own 1 s stop, not dockerd's 10 s: {took:?}");
    ssh(f, 0, "rm /etc/systemd/system/halt-test.target && systemctl daemon-reload && systemctl start docker.service app.service");
    assert!(wait_for_body(addr, "<h1>app 2</h1>\n"));
}

/// dockerd as a service drover supervises, healthy once it answers.
const DOCKERD: &str =
    "command = \"/usr/sbin/dockerd\"\n[health]\ncommand = \"docker version\"\nretries = 60\ninterval = \"250ms\"\n";

/// An OpenRC container host with the same project (dockerd a service
/// drover writes): the registry image runs under supervise-daemon, its health command
/// runs inside, an upgrade replaces the container, and removing the
/// service stops it (`stop_pre` runs `docker stop`).
#[test]
fn a_registry_image_under_docker_starts_answers_upgrades_and_stops_on_openrc() {
    let reg = registry();
    let f = Fleet::containers("dk-orc", 1, Init::OpenRc);
    let p = f.project();
    no_wget_on_the_host(&f);
    // Debian's /etc/init.d/docker mounts every cgroup controller itself,
    // which a lab host's read-only /sys/fs/cgroup refuses (the controller
    // lacks net_cls and others): dockerd runs as a service drover writes.
    docker_project(&p, &reg, DOCKERD);
    let addr = format!("{}:8080", f.lab_hosts()[0].address);

    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(wait_for_body(&addr, "<h1>app 1</h1>\n"), "nothing answers at {addr}");
    assert!(ssh(&f, 0, "rc-service app status").contains("started"));
    let (image1, _) = running(&f);
    service(&p, &reg, "2");
    f.apply_ok();
    assert!(wait_for_body(&addr, "<h1>app 2</h1>\n"));
    assert_ne!(running(&f).0, image1);
    assert_eq!(ssh(&f, 0, "docker ps -a --format '{{.Names}}'"), "drover-app", "one container");

    site(&p, &["docker"]);
    f.apply_ok();
    assert!(http_get(&addr).is_none(), "the removed service's container is stopped");
    assert_eq!(ssh(&f, 0, "docker ps -a --format '{{.Names}}'"), "", "and removed");
}
