//! `runtime = "docker" | "podman"` (docs/containers.md, "Docker and Podman
//! runtimes"): the same rootfs files as under runc, no config.json and no
//! runc in the closure; a `run` script that imports the rootfs into the
//! engine under a content tag and runs it attached with the bundle's
//! settings as flags; `docker stop`; exec and health via `docker exec`.

use std::fs;

use drover_proto::{HealthProbe, Supervisor};
use drover_spec::Project;

use super::{facts, load, project, text, WEB};
use crate::support::render_error;

const DIR: &str = "/var/lib/drover/containers/web";

fn with_runtime(runtime: &str) -> String {
    WEB.replacen(
        "image = { dir = \"images/web\" }\n",
        &format!("image = {{ dir = \"images/web\" }}\nruntime = \"{runtime}\"\n"),
        1,
    )
}

/// An engine-run service's project, without the runc packages.lock (an
/// engine is not installed by drover, so nothing is requested).
fn engine_project(runtime: &str) -> tempfile::TempDir {
    let d = project(&with_runtime(runtime));
    fs::remove_file(d.path().join("packages.lock")).unwrap();
    d
}

/// The tag of the image the run script runs.
fn image_of(run: &str) -> String {
    run.lines().find_map(|l| l.strip_prefix("IMAGE=")).unwrap_or_else(|| panic!("no IMAGE= in {run}")).to_string()
}

#[test]
fn a_docker_image_service_compiles_to_the_same_rootfs_an_env_file_and_an_attached_docker_run() {
    let d = engine_project("docker");
    let p = load(d.path());
    assert!(!p.package_requests().contains_key("app"), "no runc: {:?}", p.package_requests());
    let c = p.compile(&p.hosts[0], &facts(Supervisor::Runit), 1).unwrap();
    let runc = project(WEB);
    let rp = load(runc.path());
    let rc = rp.compile(&rp.hosts[0], &facts(Supervisor::Runit), 1).unwrap();
    let rootfs = |c: &drover_spec::Compiled| -> Vec<(String, u32)> {
        c.manifest
            .entries
            .iter()
            .filter(|e| e.path.starts_with(&format!("{DIR}/rootfs")))
            .map(|e| (e.path.clone(), e.mode))
            .collect()
    };
    assert_eq!(rootfs(&c), rootfs(&rc), "the same managed rootfs files as under runc");
    assert!(c.manifest.entry(&format!("{DIR}/config.json")).is_none());
    assert!(c.manifest.setup.packages.is_empty());

    let env = c.manifest.entry(&format!("{DIR}/env")).unwrap();
    assert_eq!(env.mode, 0o600, "the environment may hold secrets");
    assert_eq!(
        text(&c, &format!("{DIR}/env")),
        "GREETING=hi\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );

    let run = text(&c, &format!("{DIR}/run"));
    let image = image_of(&run);
    assert!(image.starts_with("localhost/drover/web:") && image.len() == "localhost/drover/web:".len() + 20, "{image}");
    for want in [
        "if ! command -v docker >/dev/null 2>&1; then\n\techo \"drover: $(uname -n): service web has runtime = \\\"docker\\\" but there is no docker on this host (drover does not install it",
        "if ! docker version >/dev/null 2>&1; then",
        "chown 1000:1001 /var/lib/drover/volumes/web/data.new.$$",
        "[ -e /srv/shared ] || mkdir -p /srv/shared",
        "if ! docker image inspect \"$IMAGE\" >/dev/null 2>&1; then\n\ttar -C /var/lib/drover/containers/web/rootfs --numeric-owner -cf - . | docker import --message 'drover web' - \"$IMAGE\" >/dev/null\nfi\n",
        "docker rm -f drover-web >/dev/null 2>&1 || true\n",
        "docker image ls --format '{{.Tag}}' localhost/drover/web | grep -vx ",
        "| sed 1,4d | while read -r t; do\n\tdocker image rm \"localhost/drover/web:$t\"",
        "exec 9>&-\nexec docker run --rm --name drover-web --pull never --network host --sig-proxy=true \\\n\t--user 1000:1001 --workdir / --env-file /var/lib/drover/containers/web/env \\\n\t--read-only --tmpfs /tmp:rw,exec,nosuid,nodev,mode=1777 --tmpfs /run:rw,exec,nosuid,nodev,mode=755 \\\n\t-v /var/lib/drover/container-hosts:/etc/hosts:ro \\\n\t--cap-drop ALL --cap-add AUDIT_WRITE ",
        " --cap-add SYS_CHROOT --security-opt no-new-privileges \\\n\t--log-driver none \\\n\t--memory 268435456 --memory-swap 268435456 --pids-limit 64 \\\n\t-v /var/lib/drover/volumes/web/data:/var/lib/web \\\n\t-v /srv/shared:/shared:ro \\\n\t--entrypoint /bin/httpd \"$IMAGE\" -f -p 8080 -h /www\n",
    ] {
        assert!(run.contains(want), "{want}\n---\n{run}");
    }
    // The import and the prune happen before the stale container goes and the run starts.
    let at = |s: &str| run.find(s).unwrap_or_else(|| panic!("{s}"));
    assert!(at("docker import") < at("docker rm -f") && at("docker rm -f") < at("exec docker run"));
    assert_eq!(
        text(&c, &format!("{DIR}/stop")).lines().last(),
        Some("docker stop -t 5 drover-web >/dev/null 2>&1 || exit 1")
    );
    assert_eq!(text(&c, "/etc/sv/web/control/t").lines().last(), Some("exec /var/lib/drover/containers/web/stop"));
    assert!(text(&c, "/etc/sv/web/run").contains("exec /bin/sh -c 'exec /var/lib/drover/containers/web/run'"));
    let s = &c.manifest.services[0];
    for t in [
        &format!("{DIR}/rootfs/bin/busybox"),
        &format!("{DIR}/run"),
        &format!("{DIR}/env"),
        &"/etc/sv/web/run".to_string(),
    ] {
        assert!(s.triggers.iter().any(|x| x == t), "{t} restarts it: {:?}", s.triggers);
    }
    let Some(HealthProbe::Command(h)) = s.health.as_ref().map(|h| &h.probe) else { panic!("{s:?}") };
    assert_eq!(h, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin docker exec --user 1000:1001 drover-web wget -q -O /dev/null http://127.0.0.1:8080/");
}

/// The tag is the rootfs's content: the same files give the same tag on
/// every compile; one changed file gives another; the command, env and
/// limits (flags of `docker run`) do not change it.
#[test]
fn the_engine_image_tag_follows_the_rootfs_content_only() {
    let d = engine_project("docker");
    let tag = |d: &tempfile::TempDir| {
        let p = load(d.path());
        image_of(&text(&p.compile(&p.hosts[0], &facts(Supervisor::Systemd), 1).unwrap(), &format!("{DIR}/run")))
    };
    let t1 = tag(&d);
    assert_eq!(tag(&d), t1);
    // On systemd the unit starts after dockerd and stops before it.
    let p = load(d.path());
    let unit =
        text(&p.compile(&p.hosts[0], &facts(Supervisor::Systemd), 1).unwrap(), "/etc/systemd/system/web.service");
    assert!(unit.contains("\nAfter=docker.service\n") && unit.contains("\nSuccessExitStatus=137 143\n"), "{unit}");
    let svc = d.path().join("services/web.toml");
    fs::write(&svc, fs::read_to_string(&svc).unwrap().replace("8080", "9090").replace("256M", "128M")).unwrap();
    assert_eq!(tag(&d), t1, "flags of docker run are not in the image");
    fs::write(d.path().join("images/web/www/index.html"), "hello 2\n").unwrap();
    assert_ne!(tag(&d), t1);
    fs::set_permissions(
        d.path().join("images/web/www/index.html"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let t3 = tag(&d);
    fs::set_permissions(
        d.path().join("images/web/www/index.html"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    assert_ne!(tag(&d), t3, "a mode is content too");
}

/// Podman: the same script with its CLI (podman keeps its own logs: no
/// `--log-driver`), systemd's ExecStop, instances each their own container
/// on the one image, and `podman exec` for exec.
#[test]
fn podman_instances_run_the_same_script_with_podman_and_one_image() {
    let d = project("image = { dir = \"images/web\" }\nruntime = \"podman\"\ninstances = 2\ncommand = [\"/bin/httpd\", \"-f\", \"-p\", \"{{ instance.ports.http }}\"]\n[ports]\nhttp = \"8100-8199\"\n");
    fs::remove_file(d.path().join("packages.lock")).unwrap();
    let p = load(d.path());
    let c = p.compile(&p.hosts[0], &facts(Supervisor::Systemd), 1).unwrap();
    let mut images = vec![];
    for (i, n) in ["web-0", "web-1"].into_iter().enumerate() {
        let run = text(&c, &format!("/var/lib/drover/containers/{n}/run"));
        assert!(run.contains(&format!("podman rm -f drover-{n} ")), "{run}");
        assert!(run.contains(&format!("exec podman run --rm --name drover-{n} --pull never --network host")), "{run}");
        assert!(run.contains("tar -C /var/lib/drover/containers/web/rootfs "), "the service's one rootfs: {run}");
        assert!(run.contains(&format!("\"$IMAGE\" -f -p 810{i}\n")), "{run}");
        assert!(!run.contains("--log-driver") && !run.contains("docker"), "{run}");
        images.push(image_of(&run));
        let unit = text(&c, &format!("/etc/systemd/system/{n}.service"));
        assert!(unit.contains(&format!("ExecStop=/var/lib/drover/containers/{n}/stop")), "{unit}");
        assert!(!unit.contains("After="), "podman has no daemon to wait for: {unit}");
    }
    assert_eq!(images[0], images[1]);
    assert!(images[0].starts_with("localhost/drover/web:"));
    assert_eq!(
        drover_spec::container::engine::exec_command(
            drover_spec::container::Runtime::Podman,
            "web-1",
            &["cat".into(), "/a b".into()],
            None
        ),
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin podman exec drover-web-1 cat '/a b'"
    );
}

#[test]
fn runtime_mistakes_name_the_file_line_and_fix() {
    for (service, line, want) in [
        (
            "image = { dir = \"images/web\" }\ncommand = \"x\"\nruntime = \"lxc\"\n",
            3,
            "runtime \"lxc\" is not one drover knows",
        ),
        ("command = \"x\"\nruntime = \"docker\"\n", 2, "`runtime` is for services run from an image"),
        (
            "image = { dir = \"images/web\" }\ncommand = \"x\"\nruntime = \"docker\"\nenv = { A = \"1\\n2\" }\n",
            3,
            "cannot reach a docker container",
        ),
    ] {
        let d = project(service);
        let e = render_error(Project::load(d.path()).err().unwrap_or_else(|| panic!("accepted: {service}")));
        assert!(e.contains(&format!("services/web.toml:{line}:")) && e.contains(want), "{service}\n{e}");
    }
}
