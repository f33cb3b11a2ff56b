//! The engine runtimes' names, repositories and capabilities.

use super::*;

#[test]
fn runtimes_parse_by_their_cli_names_only() {
    for r in [Runtime::Runc, Runtime::Docker, Runtime::Podman] {
        assert_eq!(Runtime::parse(r.name()), Some(r));
    }
    assert_eq!(Runtime::parse("Docker"), None);
    assert_eq!(Runtime::parse("containerd"), None);
    assert_eq!(Runtime::default(), Runtime::Runc);
}

#[test]
fn image_repositories_are_valid_engine_names_and_distinct_per_service() {
    assert_eq!(image_repo("web"), "localhost/drover/web");
    assert_eq!(image_repo("db-1"), "localhost/drover/db-1");
    let (a, b) = (image_repo("Web"), image_repo("web_"));
    assert!(a.starts_with("localhost/drover/web-") && b.starts_with("localhost/drover/web-"), "{a} {b}");
    assert_ne!(a, b);
    assert_ne!(a, image_repo("web"));
    for r in [a, b, image_repo("_x_"), image_repo("..")] {
        let last = r.rsplit('/').next().unwrap();
        assert!(
            last.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !last.starts_with('-')
                && !last.ends_with('-'),
            "{r}"
        );
    }
}

/// An engine's container gets exactly the capabilities the runc bundle's
/// bounding set holds.
#[test]
fn engine_capabilities_are_the_runc_bundles() {
    let c = Container {
        image: "images/web".into(),
        files: Default::default(),
        process: Process { args: vec!["/bin/x".into()], env: Default::default(), uid: 0, gid: 0, cwd: "/".into() },
        volumes: vec![],
        memory: None,
        pids: None,
        stop_grace_secs: 5,
        runtime: Runtime::Runc,
    };
    let j: serde_json::Value =
        serde_json::from_slice(&super::super::bundle::config_json("web", "web", &c, &c.process)).unwrap();
    let mut runc: Vec<String> = j["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().trim_start_matches("CAP_").to_string())
        .collect();
    runc.sort();
    assert_eq!(runc, CAPS.to_vec());
}

fn container(runtime: Runtime) -> Container {
    Container {
        image: "images/web".into(),
        files: Default::default(),
        process: Process {
            args: vec!["/bin/httpd".into(), "-p".into(), "80 80".into()],
            env: Default::default(),
            uid: 0,
            gid: 0,
            cwd: "/".into(),
        },
        volumes: vec![],
        memory: None,
        pids: None,
        stop_grace_secs: 5,
        runtime,
    }
}

/// Runs `web`'s run script with a fake engine CLI (and `tar`) first on
/// PATH that logs its arguments; `inspect_ok` says whether the engine has
/// the image; `image ls` lists `tags` newest first. Returns the exit
/// status, stderr and the log.
fn run_with_fake_engine(runtime: Runtime, inspect_ok: bool, tags: &[&str]) -> (bool, String, String) {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = d.path().join("log");
    let cli = runtime.name();
    let fake = format!(
        "#!/bin/sh\necho \"{cli} $*\" >> {log}\ncase \"$1 $2\" in\n\t'image inspect') exit {inspect} ;;\n\t'image ls') printf '%s\\n' {tags} ;;\n\timport*) cat > /dev/null ;;\nesac\nexit 0\n",
        log = log.display(),
        inspect = if inspect_ok { 0 } else { 1 },
        tags = tags.join(" "),
    );
    for (name, text) in [(cli, fake.as_str()), ("tar", &format!("#!/bin/sh\necho \"tar $*\" >> {}\n", log.display()))] {
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let c = container(runtime);
    let script = run_script("web", "web", &c, &c.process)
        .replace(&format!("export PATH={HOST_PATH}"), &format!("export PATH={}:/usr/bin:/bin", bin.display()))
        .replace("/run/drover-image-", &format!("{}/lock-", d.path().display()));
    let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), log)
}

/// The run script as the shell runs it: the image imported only when the
/// engine lacks it, the stale container removed, the service's images
/// beyond the newest five (the running one kept) removed, then `run`.
#[test]
fn the_run_script_imports_when_missing_replaces_the_stale_container_and_prunes_old_images() {
    let c = container(Runtime::Docker);
    let image = image_ref("web", &c);
    let cur = image.rsplit_once(':').unwrap().1;
    let (ok, err, log) = run_with_fake_engine(Runtime::Docker, false, &["t7", "t6", cur, "t5", "t4", "t3", "t2"]);
    assert!(ok, "{err}\n{log}");
    let mut lines: Vec<&str> = log.lines().collect();
    // `tar | docker import` run at once: either may log first.
    lines[2..4].sort_unstable();
    assert_eq!(
        lines,
        [
            "docker version",
            &format!("docker image inspect {image}"),
            &format!("docker import --message drover web - {image}"),
            "tar -C /var/lib/drover/containers/web/rootfs --numeric-owner -cf - .",
            "docker rm -f drover-web",
            "docker image ls --format {{.Tag}} localhost/drover/web",
            "docker image rm localhost/drover/web:t3",
            "docker image rm localhost/drover/web:t2",
            lines[8],
        ][..]
    );
    assert!(lines[8].starts_with("docker run --rm --name drover-web --pull never --network host"), "{}", lines[8]);
    assert!(lines[8].ends_with(&format!("--entrypoint /bin/httpd {image} -p 80 80")), "{}", lines[8]);

    // Present: not imported again; nothing to prune.
    let (ok, err, log) = run_with_fake_engine(Runtime::Podman, true, &[cur, "t1"]);
    assert!(ok, "{err}\n{log}");
    assert!(!log.contains("import") && !log.contains("tar ") && !log.contains("image rm"), "{log}");
    assert!(log.contains("podman rm -f drover-web\n") && log.contains("\npodman run --rm"), "{log}");
}

/// No engine CLI: exit 1 before anything runs, the host and the runtime named.
#[test]
fn the_run_script_without_the_engine_fails_naming_host_and_runtime() {
    let c = container(Runtime::Docker);
    // A PATH with `uname` and nothing else.
    let d = tempfile::tempdir().unwrap();
    let uname = ["/usr/bin/uname", "/bin/uname"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap();
    std::os::unix::fs::symlink(uname, d.path().join("uname")).unwrap();
    let script = run_script("web", "web", &c, &c.process)
        .replace(&format!("export PATH={HOST_PATH}"), &format!("export PATH={}", d.path().display()));
    let out = std::process::Command::new("/bin/sh").arg("-c").arg(&script).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        err.trim(),
        format!("drover: {}: service web has runtime = \"docker\" but there is no docker on this host (drover does not install it: install docker, or use runtime = \"runc\")", host.trim())
    );
}
