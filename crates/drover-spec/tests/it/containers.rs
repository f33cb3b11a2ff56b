//! Services from images (docs/containers.md, "Services from images"): an
//! image directory compiles to rootfs files, an OCI bundle's config.json
//! and runc units; every mistake in an image service's keys is caught at
//! load with its file and line.

use std::fs;
use std::path::Path;

use drover_proto::{EntryKind, HealthProbe, Supervisor};
use drover_spec::Project;

use crate::support::{facts, render_error, write};

mod arches;
mod engine;

const LOCK_HASH: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// Role `app` with service `web` (`service` is services/web.toml), an image
/// directory `images/web` (busybox-like: a binary, a symlink, a config
/// file), and a packages.lock holding `runc` (what an image service adds).
fn project(service: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write(p, "drover.toml", "[project]\nname = \"t\"\n");
    write(p, "inventory.toml", "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"app\"]\n");
    write(p, "roles/app.toml", "services = [\"web\"]\n");
    write(p, "services/web.toml", service);
    write(p, "images/web/bin/busybox", "ELF pretend\n");
    std::os::unix::fs::symlink("busybox", p.join("images/web/bin/httpd")).unwrap();
    write(p, "images/web/www/index.html", "hello\n");
    write(p, &format!(".drover/packages/{LOCK_HASH}.deb"), "x");
    write(
        p,
        "packages.lock",
        &format!("version = 1\n[requests]\napp = [\"runc\"]\n[[targets]]\ntarget = \"debian-12-amd64\"\nroles = {{ app = [\"runc\"] }}\n[[targets.packages]]\nname = \"runc\"\nversion = \"1.1.5+ds1-1+deb12u1\"\narch = \"amd64\"\nfilename = \"runc_1.1.5+ds1-1+deb12u1_amd64.deb\"\nblake3 = \"{LOCK_HASH}\"\nsize = 1\n"),
    );
    d
}

fn load(p: &Path) -> Project {
    Project::load(p).unwrap_or_else(|e| panic!("{}", render_error(e)))
}

const WEB: &str = r#"image = { dir = "images/web" }
command = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
user = "1000:1001"
env = { GREETING = "hi" }
volumes = ["data:/var/lib/web", "/srv/shared:/shared:ro"]
memory = "256M"
pids = 64
restart-on = ["/var/lib/drover/containers/web/rootfs/www/**"]
[health]
command = "wget -q -O /dev/null http://127.0.0.1:8080/"
"#;

pub(crate) fn text(c: &drover_spec::Compiled, path: &str) -> String {
    let e = c.manifest.entry(path).unwrap_or_else(|| panic!("no {path}"));
    let EntryKind::File { hash, .. } = e.kind else { panic!("{path} is not a file") };
    match &c.blobs[&hash] {
        drover_spec::BlobSource::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
        drover_spec::BlobSource::File(f) => fs::read_to_string(f).unwrap(),
    }
}

/// The whole compiled shape of an image service: its rootfs as managed
/// files (modes kept, mount points added), its bundle, runit's units with
/// the graceful stop, the restart triggers (every rootfs path and unit),
/// the health command inside the container, and runc in the closure.
#[test]
fn an_image_directory_compiles_to_rootfs_files_a_bundle_and_runc_units() {
    let d = project(WEB);
    fs::set_permissions(d.path().join("images/web/bin/busybox"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let p = load(d.path());
    assert_eq!(p.package_requests()["app"], ["runc"]);
    let c = p.compile(&p.hosts[0], &facts(Supervisor::Runit), 1).unwrap();
    let root = "/var/lib/drover/containers/web/rootfs";
    let bb = c.manifest.entry(&format!("{root}/bin/busybox")).unwrap();
    assert_eq!((bb.mode, bb.owner.as_str()), (0o755, "root"));
    assert!(
        matches!(c.manifest.entry(&format!("{root}/bin/httpd")).unwrap().kind, EntryKind::Symlink { ref target } if target == "busybox")
    );
    assert_eq!(text(&c, &format!("{root}/www/index.html")), "hello\n");
    for dir in ["/proc", "/dev", "/sys", "/tmp", "/run", "/var", "/var/lib", "/var/lib/web", "/shared"] {
        assert!(matches!(c.manifest.entry(&format!("{root}{dir}")).unwrap().kind, EntryKind::Dir), "{dir}");
    }
    assert_eq!(text(&c, &format!("{root}/etc/hosts")), "", "an empty mount point for the host's file");
    let run = text(&c, "/var/lib/drover/containers/web/run");
    assert!(run.contains("runc delete -f drover-web >/dev/null 2>&1 || true\nexec runc run --bundle /var/lib/drover/containers/web drover-web\n"), "{run}");
    assert!(run.contains("chown 1000:1001 /var/lib/drover/volumes/web/data.new.$$"), "{run}");
    assert!(run.contains("[ -e /srv/shared ] || mkdir -p /srv/shared"), "{run}");
    let stop = text(&c, "/var/lib/drover/containers/web/stop");
    assert!(
        stop.contains("runc kill drover-web TERM")
            && stop.contains("while [ $i -lt 50 ]")
            && stop.contains("runc kill drover-web KILL"),
        "{stop}"
    );
    assert_eq!(text(&c, "/etc/sv/web/control/t").lines().last(), Some("exec /var/lib/drover/containers/web/stop"));
    assert!(text(&c, "/etc/sv/web/run").contains("exec /bin/sh -c 'exec /var/lib/drover/containers/web/run'"));
    assert_eq!(c.manifest.entry("/var/lib/drover/containers/web/config.json").unwrap().mode, 0o600);
    let s = &c.manifest.services[0];
    for t in [
        &format!("{root}/bin/busybox"),
        &format!("{root}/www/index.html"),
        "/var/lib/drover/containers/web/config.json",
        "/etc/sv/web/run",
    ] {
        assert!(s.triggers.iter().any(|x| x == t), "{t} restarts it: {:?}", s.triggers);
    }
    let Some(HealthProbe::Command(h)) = s.health.as_ref().map(|h| &h.probe) else { panic!("{s:?}") };
    assert_eq!(h, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin runc exec --user 1000:1001 drover-web wget -q -O /dev/null http://127.0.0.1:8080/");
    assert_eq!(c.manifest.setup.packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["runc"]);
}

/// config.json as runc reads it: the process, namespaces (host network),
/// read-only rootfs, mounts with the volumes, caps dropped for a non-root
/// user, the limits, and byte-identical output on every compile.
#[test]
fn the_bundle_config_has_the_process_namespaces_mounts_caps_and_limits() {
    let d = project(WEB);
    let p = load(d.path());
    let c = p.compile(&p.hosts[0], &facts(Supervisor::Runit), 1).unwrap();
    let raw = text(&c, "/var/lib/drover/containers/web/config.json");
    assert_eq!(
        raw,
        text(
            &p.compile(&p.hosts[0], &facts(Supervisor::Runit), 2).unwrap(),
            "/var/lib/drover/containers/web/config.json"
        )
    );
    let j: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(j["process"]["args"], serde_json::json!(["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]));
    let env: Vec<&str> = j["process"]["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(env, ["GREETING=hi", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    assert_eq!((j["process"]["user"]["uid"].as_u64(), j["process"]["user"]["gid"].as_u64()), (Some(1000), Some(1001)));
    assert_eq!(j["process"]["noNewPrivileges"], true);
    assert_eq!(j["process"]["capabilities"]["effective"], serde_json::json!([]), "a non-root user keeps no capability");
    let bounding = j["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert_eq!(bounding.len(), 14);
    assert!(!bounding.iter().any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_NET_ADMIN"));
    assert_eq!(j["root"], serde_json::json!({"path": "/var/lib/drover/containers/web/rootfs", "readonly": true}));
    let ns: Vec<&str> =
        j["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(ns, ["pid", "mount", "ipc", "uts"], "no network namespace: the host's network");
    assert_eq!(j["linux"]["resources"]["memory"]["limit"], 256 << 20);
    assert_eq!(j["linux"]["resources"]["pids"]["limit"], 64);
    assert!(j["linux"]["maskedPaths"].as_array().unwrap().iter().any(|p| p == "/proc/kcore"));
    assert!(j["linux"]["readonlyPaths"].as_array().unwrap().iter().any(|p| p == "/proc/sys"));
    let mounts = j["mounts"].as_array().unwrap();
    let at =
        |dest: &str| mounts.iter().find(|m| m["destination"] == dest).unwrap_or_else(|| panic!("no mount at {dest}"));
    assert_eq!(at("/var/lib/web")["source"], "/var/lib/drover/volumes/web/data");
    assert!(at("/shared")["options"].as_array().unwrap().iter().any(|o| o == "ro"));
    assert_eq!(at("/etc/resolv.conf")["source"], "/etc/resolv.conf");
    assert!(at("/sys")["options"].as_array().unwrap().iter().any(|o| o == "ro"));
}

/// systemd and OpenRC run the same bundle with the same graceful stop.
#[test]
fn systemd_and_openrc_units_run_the_bundle_and_stop_it_gracefully() {
    let d = project("image = { dir = \"images/web\" }\ncommand = \"/bin/httpd -f -p 8080\"\n");
    let p = load(d.path());
    let c = p.compile(&p.hosts[0], &facts(Supervisor::Systemd), 1).unwrap();
    let unit = text(&c, "/etc/systemd/system/web.service");
    assert!(unit.contains("ExecStart=/bin/sh -c 'exec /var/lib/drover/containers/web/run'\nExecStop=/var/lib/drover/containers/web/stop\n"), "{unit}");
    let j: serde_json::Value = serde_json::from_str(&text(&c, "/var/lib/drover/containers/web/config.json")).unwrap();
    assert_eq!(
        j["process"]["args"],
        serde_json::json!(["/bin/httpd", "-f", "-p", "8080"]),
        "a string is split like shell words"
    );
    assert_eq!(
        j["process"]["capabilities"]["effective"].as_array().unwrap().len(),
        14,
        "root keeps Docker's default set"
    );
    let c = p.compile(&p.hosts[0], &facts(Supervisor::OpenRc), 1).unwrap();
    let script = text(&c, "/etc/init.d/web");
    assert!(script.contains("stop_pre() {\n\t/var/lib/drover/containers/web/stop || true\n}\n"), "{script}");
}

/// Instances: one container per instance, each its own bundle (ports in
/// its argv), all on the service's one rootfs.
#[test]
fn each_instance_is_its_own_container_on_the_shared_rootfs() {
    let d = project("image = { dir = \"images/web\" }\ninstances = 2\ncommand = [\"/bin/httpd\", \"-f\", \"-p\", \"{{ instance.ports.http }}\"]\n[ports]\nhttp = \"8100-8199\"\n");
    let p = load(d.path());
    let c = p.compile(&p.hosts[0], &facts(Supervisor::Runit), 1).unwrap();
    let names: Vec<&str> = c.manifest.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1"]);
    let mut ports = vec![];
    for n in names {
        let j: serde_json::Value =
            serde_json::from_str(&text(&c, &format!("/var/lib/drover/containers/{n}/config.json"))).unwrap();
        assert_eq!(j["root"]["path"], "/var/lib/drover/containers/web/rootfs");
        ports.push(j["process"]["args"][3].as_str().unwrap().to_string());
        assert!(text(&c, &format!("/var/lib/drover/containers/{n}/run"))
            .contains(&format!("exec runc run --bundle /var/lib/drover/containers/{n} drover-{n}\n")));
    }
    assert_eq!(ports, ["8100", "8101"]);
}

/// Every mistake in an image service's keys is an error naming the file,
/// the line and the form that works.
#[test]
fn image_service_mistakes_name_the_file_line_and_fix() {
    for (service, line, want) in [
        ("command = \"x\"\nimage = \"registry.example/app:1.4\"\n", 2, "has not been pulled into .drover/images yet"),
        ("image = { file = \"images/app.tar\" }\n", 1, "run `drover plan` or `drover apply` first"),
        ("image = { dir = \"images/nope\" }\ncommand = \"x\"\n", 1, "is not a directory of the project"),
        ("image = { dir = \"images/web\" }\n", 1, "has nothing to run"),
        ("image = { dir = \"images/web\" }\nunit = \"nginx\"\n", 1, "not `image` and `unit`"),
        ("command = \"x\"\n\nentrypoint = [\"/bin/sh\"]\n", 3, "`entrypoint` is for services run from an image"),
        (
            "image = { dir = \"images/web\" }\ncommand = \"x\"\nuser = \"www-data\"\n",
            3,
            "user \"www-data\" is not in the image's /etc/passwd",
        ),
        (
            "image = { dir = \"images/web\" }\ncommand = \"x\"\nvolumes = [\"data:/a\",\n  \"db\"]\n",
            4,
            "anonymous volumes",
        ),
        ("image = { dir = \"images/web\" }\ncommand = \"x 'y\"\n", 2, "unbalanced quotes"),
        ("image = { dir = \"images/web\" }\ncommand = \"x\"\nmemory = \"lots\"\n", 3, "at least 4M"),
        ("image = { dir = \"images/web\" }\ncommand = \"x\"\nworkdir = \"srv\"\n", 3, "not absolute"),
        ("image = { dir = \"images/web\" }\ncommand = \"x\"\n[health]\ncommand = \"wget 'x\"\n", 3, "health command"),
    ] {
        let d = project(service);
        let e = render_error(Project::load(d.path()).err().unwrap_or_else(|| panic!("accepted: {service}")));
        assert!(e.contains(&format!("services/web.toml:{line}:")) && e.contains(want), "{service}\n{e}");
    }
}
