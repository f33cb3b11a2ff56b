//! The files drover compiles for an image service, written where a host's
//! agent would write them (`/var/lib/drover/containers/<name>`, under a
//! name no other test uses) and run by the controller's own runc exactly as
//! a supervisor would (`sh run`, `sh stop`): the generated config.json,
//! run and stop scripts checked against the real runtime in a second or
//! two, no lab needed. Needs root and runc (scripts/deps).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_proto::{EntryKind, Facts, HealthProbe, Supervisor};

use super::{busybox_rootfs, http_get, wait_for_body};

const HASH: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

/// Removes the test's container, bundle and volumes however the test ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("runc").args(["delete", "-f", &format!("drover-{}", self.0)]).output();
        let _ = std::fs::remove_dir_all(format!("/var/lib/drover/containers/{}", self.0));
        let _ = std::fs::remove_dir_all(format!("/var/lib/drover/volumes/{}", self.0));
        let _ = std::fs::remove_file(drover_spec::container::hosts::HOSTS_FILE);
    }
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

/// runc runs the compiled bundle: the container answers HTTP on the host's
/// network as a non-root user, its named volume is made owned by that user,
/// the health command runs inside it, `stop` ends it although its init
/// ignores SIGTERM, and a container left by a killed `runc run` is replaced
/// when the service starts again.
#[test]
fn runc_runs_the_compiled_bundle_and_the_stop_and_restart_scripts_work() {
    if !nix_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = format!("rt{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    busybox_rootfs(&p.join("images/web"), "hello from the container\n");
    let w = |rel: &str, text: &str| {
        std::fs::create_dir_all(p.join(rel).parent().unwrap()).unwrap();
        std::fs::write(p.join(rel), text).unwrap();
    };
    w("drover.toml", "[project]\nname = \"t\"\n");
    w("inventory.toml", "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"app\"]\n");
    w("roles/app.toml", &format!("services = [\"{name}\"]\n"));
    w(
        &format!("services/{name}.toml"),
        &format!("image = {{ dir = \"images/web\" }}\ncommand = \"/bin/httpd -f -p {addr} -h /www\"\nuser = \"1000:1000\"\nvolumes = [\"data:/data\"]\nstop-grace-period = \"1s\"\n[health]\ncommand = \"wget -q -O - http://{addr}/\"\n"),
    );
    w(&format!(".drover/packages/{HASH}.deb"), "x");
    w("packages.lock", &format!("version = 1\n[requests]\napp = [\"runc\"]\n[[targets]]\ntarget = \"debian-12-amd64\"\nroles = {{ app = [\"runc\"] }}\n[[targets.packages]]\nname = \"runc\"\nversion = \"1\"\narch = \"amd64\"\nfilename = \"runc.deb\"\nblake3 = \"{HASH}\"\nsize = 1\n"));
    let project = drover_spec::Project::load(p).unwrap();
    let facts = Facts {
        supervisor: Some(Supervisor::Runit),
        os_id: "debian".into(),
        os_version: "12".into(),
        arch: "x86_64".into(),
        ..Default::default()
    };
    let c = project.compile(&project.hosts[0], &facts, 1).unwrap();
    let bundle = format!("/var/lib/drover/containers/{name}");
    // Written as the agent would: what lies under the bundle directory.
    // (and the containers' /etc/hosts, which config.json mounts).
    let hosts = drover_spec::container::hosts::HOSTS_FILE;
    let ours = |p: &str| p.starts_with(&format!("{bundle}/")) || p == bundle || p == hosts;
    for e in c.manifest.entries.iter().filter(|e| ours(&e.path)) {
        match &e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&e.path).unwrap(),
            EntryKind::Symlink { target } => std::os::unix::fs::symlink(target, &e.path).unwrap(),
            EntryKind::File { hash, .. } => {
                let bytes = match &c.blobs[hash] {
                    drover_spec::BlobSource::Bytes(b) => b.to_vec(),
                    drover_spec::BlobSource::File(f) => std::fs::read(f).unwrap(),
                };
                std::fs::create_dir_all(std::path::Path::new(&e.path).parent().unwrap()).unwrap();
                std::fs::write(&e.path, bytes).unwrap();
            }
        }
        if !matches!(e.kind, EntryKind::Symlink { .. }) {
            std::fs::set_permissions(&e.path, std::fs::Permissions::from_mode(e.mode)).unwrap();
        }
    }
    let start = |log: &str| {
        Command::new("sh")
            .arg(format!("{bundle}/run"))
            .stdout(std::fs::File::create(p.join(log)).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut run = start("log1");
    assert!(
        wait_for_body(&addr, "hello from the container\n"),
        "no answer; log: {:?}",
        std::fs::read_to_string(p.join("log1"))
    );
    let vol = std::fs::metadata(format!("/var/lib/drover/volumes/{name}/data")).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&vol), std::os::unix::fs::MetadataExt::gid(&vol)), (1000, 1000));
    let Some(HealthProbe::Command(health)) = c.manifest.services[0].health.as_ref().map(|h| h.probe.clone()) else {
        panic!()
    };
    let out = sh(&health);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout) == "hello from the container\n", "{out:?}");
    let id = sh(&drover_spec::container::units::exec_command(&name, &["id".into()], None));
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "uid=1000 gid=1000",
        "exec runs as the container's user (docker exec's default)"
    );
    let ps = sh(&drover_spec::container::units::health_command(
        &name,
        "id -u",
        &drover_spec::container::Process {
            args: vec![],
            env: Default::default(),
            uid: 1000,
            gid: 1000,
            cwd: "/".into(),
        },
    )
    .unwrap());
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "1000", "the health command runs as the container's user");
    // The seccomp filter: no new user namespace, not even for the
    // container's root (which needs no capability for one otherwise).
    let userns = sh(&format!(
        "{} 2>&1; echo rc=$?",
        drover_spec::container::units::exec_command(
            &name,
            &["/bin/busybox".into(), "unshare".into(), "-U".into(), "true".into()],
            Some((0, 0))
        )
    ));
    let userns = String::from_utf8_lossy(&userns.stdout);
    assert!(userns.contains("Operation not permitted") && userns.trim().ends_with("rc=1"), "{userns}");
    // httpd as pid 1 has no SIGTERM handler: stop escalates to SIGKILL.
    let t = Instant::now();
    assert!(sh(&format!("sh {bundle}/stop")).status.success());
    let status = wait_exit(&mut run, Duration::from_secs(5)).expect("runc run ends once its container is stopped");
    assert!(t.elapsed() < Duration::from_secs(4), "stopped in {:?}", t.elapsed());
    assert!(http_get(&addr).is_none(), "nothing answers after stop ({status:?})");
    // A `runc run` killed outright leaves its container running: the next
    // start removes it first and runs a new one.
    let mut run = start("log2");
    assert!(wait_for_body(&addr, "hello from the container\n"));
    run.kill().unwrap();
    let _ = run.wait();
    assert!(http_get(&addr).is_some(), "the orphaned container still answers");
    let mut run = start("log3");
    std::thread::sleep(Duration::from_millis(300));
    assert!(wait_for_body(&addr, "hello from the container\n"), "log: {:?}", std::fs::read_to_string(p.join("log3")));
    assert!(sh(&format!("sh {bundle}/stop")).status.success());
    assert!(wait_exit(&mut run, Duration::from_secs(5)).is_some());
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
