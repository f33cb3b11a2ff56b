//! Packages on lab hosts that have no route to any package mirror (issue
//! 13, items 1 and 2): real apt and dpkg-deb on the controller, real dpkg
//! on hosts, the real agent. Users, groups, dirs and reload-on: `accounts.rs`.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Fleet, Run, DROVER};

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap_or_default();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// Top-level keys go before the file's first table.
fn prepend(path: &Path, text: &str) {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, format!("{text}{s}")).unwrap();
}

fn apply_ok(f: &Fleet) -> Vec<serde_json::Value> {
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "apply failed:\n{}\n{}", r.stdout, r.stderr);
    r.hosts()
}

/// `dpkg-query` on host 0: "<status> <version>" of a package.
fn dpkg_status(f: &Fleet, pkg: &str) -> String {
    f.host_sh(0, &format!("dpkg-query -W -f='${{Status}} ${{Version}}' {pkg} 2>/dev/null || true"))
}

#[test]
fn packages_install_from_the_cache_on_a_host_without_a_mirror_route_and_a_second_apply_runs_no_dpkg() {
    let f = Fleet::new("pkg-offline", 1);
    // No route anywhere but the lab's own link: no mirror is reachable.
    let routes = f.host_sh(0, "ip route show default; ip -6 route show default");
    assert_eq!(routes, "", "the lab host has a default route");
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let hosts = apply_ok(&f);
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");

    // The lock names sl and its dependency not in the base system, with
    // hashes of the cached files.
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(f.project().join("packages.lock")).unwrap()).unwrap();
    let target = &lock["targets"].as_array().unwrap()[0];
    assert_eq!(target["target"].as_str().unwrap(), "debian-12-amd64");
    let pkgs = target["packages"].as_array().unwrap();
    let names: Vec<&str> = pkgs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["libncurses6", "sl"], "closure: sl plus what the base system lacks");
    for p in pkgs {
        let cached = f.project().join(format!(".drover/packages/{}.deb", p["blake3"].as_str().unwrap()));
        let bytes = std::fs::read(&cached).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), p["blake3"].as_str().unwrap());
        let version = p["version"].as_str().unwrap();
        let name = p["name"].as_str().unwrap();
        assert_eq!(dpkg_status(&f, name), format!("install ok installed {version}"), "{name}");
    }
    assert!(f.host_file(0, "/usr/games/sl").is_file(), "sl's files are installed");

    // Second apply: unchanged, and dpkg did not run (its log is untouched).
    let log = std::fs::read(f.host_file(0, "/var/log/dpkg.log")).unwrap();
    let hosts = apply_ok(&f);
    assert_eq!(hosts[0]["outcome"], "unchanged", "{hosts:?}");
    assert_eq!(std::fs::read(f.host_file(0, "/var/log/dpkg.log")).unwrap(), log, "dpkg ran on a no-op apply");

    // A changed package list without re-locking is refused before any host is touched.
    let role = f.project().join("roles/site.toml");
    let text = std::fs::read_to_string(&role).unwrap().replace("[\"sl\"]", "[\"sl\", \"figlet\"]");
    std::fs::write(&role, text).unwrap();
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("role site's packages changed") && r.stderr.contains("drover packages lock"),
        "{}",
        r.stderr
    );
}

/// A project whose one host cannot be reached (nothing listens at the
/// address): any error must come from resolution, before connecting.
fn offline_project(role_extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("p");
    let r = Run::from(Command::new(DROVER).arg("init").arg(&proj).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::write(proj.join("inventory.toml"), "[hosts.far]\naddress = \"192.0.2.1\"\nhost-key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1TPpVyCo8KkWnL4SgJvDfGq8r8R8mH2D0m9m0x6Rq2\"\n").unwrap();
    prepend(&proj.join("roles/site.toml"), role_extra);
    (dir, proj)
}

#[test]
fn unknown_packages_and_unsatisfiable_versions_are_refused_before_any_host_is_contacted() {
    for (extra, want) in [
        ("packages = [\"no-such-package-drover\"]\n", "package \"no-such-package-drover\" is not known"),
        ("packages = [\"sl=0.0-0\"]\n", "package sl version \"0.0-0\" cannot be had"),
    ] {
        let (_d, proj) = offline_project(extra);
        let r = Run::from(Command::new(DROVER).arg("-C").arg(&proj).arg("plan").output().unwrap());
        assert_ne!(r.code, 0, "{extra}");
        assert!(r.stderr.contains(want) && r.stderr.contains("roles/site.toml"), "{extra}: {}", r.stderr);
        assert!(!r.stderr.contains("192.0.2.1"), "a host was contacted: {}", r.stderr);
        assert!(r.stdout.is_empty(), "a host was reported on, so it was contacted: {}", r.stdout);
        assert!(!proj.join("packages.lock").exists(), "a failed resolution wrote a lock");
    }
}

#[test]
fn a_conflicting_closure_and_an_unreadable_source_are_refused_naming_the_package_and_the_source() {
    let (_d, proj) = offline_project("packages = [\"drover-a\", \"drover-b\"]\n");
    build_deb(&proj, "drover-a", "Depends: drover-c\n", "#!/bin/sh\n");
    build_deb(&proj, "drover-b", "", "#!/bin/sh\n");
    build_deb(&proj, "drover-c", "Conflicts: drover-b\n", "#!/bin/sh\n");
    append(&proj.join("drover.toml"), "\n[packages]\nsources = [\"debs\"]\n");
    let r = Run::from(Command::new(DROVER).arg("-C").arg(&proj).arg("plan").output().unwrap());
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("package drover-c conflicts with drover-b") && r.stderr.contains("roles/site.toml"),
        "exit {}: {}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.is_empty(), "a host was contacted: {}", r.stdout);

    let toml = std::fs::read_to_string(proj.join("drover.toml")).unwrap().replace("[\"debs\"]", "[\"no-such-dir\"]");
    std::fs::write(proj.join("drover.toml"), toml).unwrap();
    let r = Run::from(Command::new(DROVER).arg("-C").arg(&proj).args(["packages", "lock"]).output().unwrap());
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("package source") && r.stderr.contains("no-such-dir") && r.stderr.contains("cannot read"),
        "{}",
        r.stderr
    );
    assert!(!proj.join("packages.lock").exists());
}

#[test]
fn a_fresh_checkout_refetches_exactly_the_locked_files_and_refuses_a_changed_one() {
    let (_d, proj) = offline_project("packages = [\"sl\", \"drover-own\"]\n");
    build_deb(&proj, "drover-own", "", "#!/bin/sh\n");
    append(&proj.join("drover.toml"), "\n[packages]\nsources = [\"debs\", \"apt\"]\n");
    let drover = |args: &[&str]| Run::from(Command::new(DROVER).arg("-C").arg(&proj).args(args).output().unwrap());
    let r = drover(&["packages", "lock"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lock_text = std::fs::read_to_string(proj.join("packages.lock")).unwrap();
    let cache = proj.join(".drover/packages");
    let before: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before.len(), 3, "sl, libncurses6, drover-own: {before:?}");

    // A fresh checkout: the lock, no cache. Plan fetches the same files.
    std::fs::remove_dir_all(&cache).unwrap();
    let r = drover(&["plan"]);
    assert!(r.stdout.contains("unreachable"), "compile stopped: {}{}", r.stdout, r.stderr);
    let mut after: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(after, before, "other files than the locked ones");
    assert_eq!(std::fs::read_to_string(proj.join("packages.lock")).unwrap(), lock_text, "the lock was rewritten");

    // The same version rebuilt with other content: refused, not taken.
    std::fs::remove_dir_all(&cache).unwrap();
    build_deb_with(&proj, "drover-own", "", "#!/bin/sh\n", b"other\n");
    let r = drover(&["plan"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("fetching drover-own 1.0") && r.stderr.contains("packages.lock says"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "a host was contacted: {}", r.stdout);
    assert_eq!(std::fs::read_to_string(proj.join("packages.lock")).unwrap(), lock_text, "the lock was rewritten");
}

/// A .deb named `name` whose postinst prints a marker and fails.
fn failing_deb(dir: &Path, name: &str) {
    build_deb(dir, name, "", "#!/bin/sh\necho drover-test-postinst-failed >&2\nexit 1\n");
}

/// A small .deb in `dir/debs`, with extra control fields and a postinst.
fn build_deb(dir: &Path, name: &str, control_extra: &str, postinst: &str) {
    build_deb_with(dir, name, control_extra, postinst, b"x\n");
}

/// [`build_deb`] with `payload` as its one file.
fn build_deb_with(dir: &Path, name: &str, control_extra: &str, postinst: &str, payload: &[u8]) {
    let root = dir.join(format!("{name}-build"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/doc").join(name)).unwrap();
    std::fs::write(root.join("usr/share/doc").join(name).join("README"), payload).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\n{control_extra}Description: test\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("DEBIAN/postinst"), postinst).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("DEBIAN/postinst"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(debs.join(format!("{name}_1.0_all.deb")))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_failing_maintainer_script_fails_the_generation_with_files_not_swapped_and_dpkgs_output_shown() {
    let f = Fleet::new("pkg-fail", 1);
    apply_ok(&f);
    let motd = std::fs::read(f.host_file(0, "/etc/motd")).unwrap();
    failing_deb(&f.project(), "drover-failing");
    append(&f.project().join("drover.toml"), "\n[packages]\nsources = [\"debs\", \"apt\"]\n");
    prepend(&f.project().join("roles/site.toml"), "packages = [\"drover-failing\"]\n");
    append(&f.project().join("layers/site/etc/motd"), "changed with the failing package\n");
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "failed", "{h}");
    let err = h["error"].as_str().unwrap_or_default();
    assert!(err.contains("drover-test-postinst-failed") && err.contains("dpkg"), "{err}");
    assert_eq!(std::fs::read(f.host_file(0, "/etc/motd")).unwrap(), motd, "files were swapped");
    assert!(!dpkg_status(&f, "drover-failing").contains("installed 1.0"), "left installed");
    assert_eq!(f.host_sh(0, "dpkg --audit"), "", "dpkg left half-installed packages");
}

/// Killed between `dpkg --unpack` and `dpkg --configure`: the next session
/// finishes the install with `dpkg --configure -a` and says so.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn an_agent_killed_mid_install_is_finished_by_dpkg_configure_at_the_next_session() {
    let f = Fleet::new("pkg-crash", 1);
    apply_ok(&f);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    std::fs::write(&hook, "dpkg-unpacked").unwrap();
    let mut child = f.spawn_drover(&["apply", "--json", "--retries", "0"]);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = std::time::Instant::now();
    while !reached.exists() {
        assert!(start.elapsed().as_secs() < 120, "agent never reached dpkg-unpacked");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(f.kill_agent(0) > 0, "no agent process found");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_file(&hook).unwrap();
    let status_file = || std::fs::read_to_string(f.host_file(0, "/var/lib/dpkg/status")).unwrap();
    let sl = |s: &str| s.split("\n\n").find(|st| st.starts_with("Package: sl\n")).unwrap_or("").to_string();
    assert!(sl(&status_file()).contains("Status: install ok unpacked"), "{}", sl(&status_file()));

    let st = f.drover(&["status", "--json"]);
    assert_eq!(st.code, 0, "{}\n{}", st.stdout, st.stderr);
    assert!(st.stdout.contains("a package install was interrupted; dpkg --configure -a finished it"), "{}", st.stdout);
    assert!(sl(&status_file()).contains("Status: install ok installed"), "{}", sl(&status_file()));
    assert_eq!(f.host_sh(0, "dpkg --audit"), "");
    assert!(!f.host_file(0, "/usr/sbin/policy-rc.d").exists(), "drover's policy-rc.d was left behind");
    // The apply that was cut off now completes (sl is in place: no dpkg).
    let hosts = apply_ok(&f);
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
}

fn drover_in(dir: &Path, args: &[&str]) -> Run {
    Run::from(Command::new(DROVER).current_dir(dir).args(args).stdin(std::process::Stdio::null()).output().unwrap())
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn a_bundle_carries_the_locked_packages_to_apply_bundle_and_to_the_agents_own_install() {
    let f = Fleet::new("pkg-bundle", 2);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = (keys.path().join("ops.key"), keys.path().join("ops.pub"));
    ok(&drover_in(
        keys.path(),
        &["bundle", "keygen", "--key", key.to_str().unwrap(), "--pub", public.to_str().unwrap()],
    ));
    let bundle = keys.path().join("site.drv");
    ok(&f.drover(&["bundle", "build", "-o", bundle.to_str().unwrap()]));
    ok(&drover_in(Path::new("/"), &["bundle", "sign", bundle.to_str().unwrap(), "--key", key.to_str().unwrap()]));
    let inspect = drover_in(Path::new("/"), &["bundle", "inspect", bundle.to_str().unwrap(), "--json"]);
    ok(&inspect);
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(f.project().join("packages.lock")).unwrap()).unwrap();
    for p in lock["targets"].as_array().unwrap()[0]["packages"].as_array().unwrap() {
        assert!(
            inspect.stdout.contains(p["blake3"].as_str().unwrap()),
            "bundle lacks {}: {}",
            p["name"],
            inspect.stdout
        );
    }

    // drover apply --bundle, with the project (and its package cache) away.
    let away = f.project().with_extension("away");
    std::fs::rename(f.project(), &away).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let r = drover_in(
        empty.path(),
        &[
            "apply",
            "--json",
            "--hosts",
            "h1",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
        ],
    );
    std::fs::rename(&away, f.project()).unwrap();
    ok(&r);
    assert_eq!(r.hosts()[0]["outcome"], "changed", "{}", r.stdout);
    assert!(f.host_file(0, "/usr/games/sl").is_file(), "h1: sl not installed from the bundle");

    // The host's own agent, from a USB stick: no controller, no network.
    let stick = f.host_file(1, "/media/usb");
    std::fs::create_dir_all(&stick).unwrap();
    std::fs::copy(&bundle, stick.join("site.drv")).unwrap();
    std::fs::copy(drover_bundle::sig_path(&bundle), stick.join("site.drv.minisig")).unwrap();
    std::fs::copy(&public, stick.join("ops.pub")).unwrap();
    let agent = stick.join("drover-agent");
    ok(&drover_in(
        Path::new("/"),
        &[
            "bundle",
            "agent",
            bundle.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
            "-o",
            agent.to_str().unwrap(),
        ],
    ));
    let h = &f.lab_hosts()[1];
    let r = Run::from(
        Command::new("ip")
            .args(["netns", "exec", &h.netns, "chroot"])
            .arg(&h.root)
            .args(["/media/usb/drover-agent", "install", "/media/usb/site.drv", "--pubkey", "/media/usb/ops.pub"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap(),
    );
    ok(&r);
    assert!(r.stdout.contains("installed") && r.stdout.contains("sl=5.02"), "{}", r.stdout);
    assert!(f.host_file(1, "/usr/games/sl").is_file(), "h2: sl not installed by the agent's install");
}

#[test]
fn packages_absent_are_removed_and_a_rollback_does_not_reinstall_them() {
    let f = Fleet::new("pkg-absent", 1);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    apply_ok(&f);
    assert!(dpkg_status(&f, "sl").starts_with("install ok installed"));
    let role = f.project().join("roles/site.toml");
    let text = std::fs::read_to_string(&role).unwrap().replace("packages = [\"sl\"]", "packages-absent = [\"sl\"]");
    std::fs::write(&role, text).unwrap();
    let hosts = apply_ok(&f);
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    // (--remove, not --purge: a package's configuration files would stay; sl has none.)
    assert!(!dpkg_status(&f, "sl").contains("ok installed"), "{}", dpkg_status(&f, "sl"));
    assert!(!f.host_file(0, "/usr/games/sl").exists());
    // Back to the generation that had sl: files are restored, packages are not touched.
    let log = std::fs::read(f.host_file(0, "/var/log/dpkg.log")).unwrap();
    let r = f.drover(&["rollback", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read(f.host_file(0, "/var/log/dpkg.log")).unwrap(), log, "rollback ran dpkg");
    assert!(!f.host_file(0, "/usr/games/sl").exists(), "rollback reinstalled sl");
}

#[test]
fn with_relay_the_locked_packages_travel_host_to_host_and_the_controller_sends_them_about_once() {
    let f = Fleet::new("pkg-relay", 3);
    // 1.5 MiB that does not compress: above the relay's 1 MiB threshold.
    let mut noise = Vec::with_capacity(3 << 19);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < 3 << 19 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    build_deb_with(&f.project(), "drover-big", "", "#!/bin/sh\n", &noise);
    append(&f.project().join("drover.toml"), "\n[packages]\nsources = [\"debs\", \"apt\"]\n");
    prepend(&f.project().join("roles/site.toml"), "packages = [\"drover-big\"]\n");
    let lock = f.drover(&["packages", "lock"]);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    let size = std::fs::metadata(f.project().join("debs/drover-big_1.0_all.deb")).unwrap().len();
    let r = f.apply_json(&["--relay", "--relay-min-mib", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let sent: u64 = r.hosts().iter().map(|h| h["bytes_sent"].as_u64().unwrap()).sum();
    // Direct, each of the 3 hosts would get the whole .deb from the controller.
    assert!(sent < 2 * size, "controller sent {sent} bytes for a {size}-byte package on 3 hosts: not relayed");
    for i in 0..3 {
        assert!(
            f.host_file(i, "/usr/share/doc/drover-big/README").is_file(),
            "h{}: the package is not installed",
            i + 1
        );
    }
}

#[test]
fn a_package_removed_by_hand_is_drift_that_plan_shows_and_apply_reinstalls() {
    let f = Fleet::new("pkg-drift", 1);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    apply_ok(&f);
    f.host_sh(0, "dpkg --remove sl >/dev/null 2>&1");
    assert!(!f.host_file(0, "/usr/games/sl").exists());
    let r = f.drover(&["plan", "--json"]);
    assert_eq!(r.hosts()[0]["outcome"], "planned", "{}", r.stdout);
    assert_eq!(r.hosts()[0]["setup"], serde_json::json!(["package sl 5.02-1+b1 not installed"]), "{}", r.stdout);
    let st = f.drover(&["status", "--json"]);
    assert!(st.stdout.contains("package sl 5.02-1+b1 not installed"), "drift not reported: {}", st.stdout);
    let hosts = apply_ok(&f);
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(f.host_file(0, "/usr/games/sl").is_file(), "sl not reinstalled");
    assert_eq!(apply_ok(&f)[0]["outcome"], "unchanged");
}
