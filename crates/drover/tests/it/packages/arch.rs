//! Locking another architecture's closure (`debian-12-arm64` on an amd64
//! controller, issue 30): from the controller's apt with multiarch, and from
//! a directory of arm64 `.deb` files; the amd64 target beside it untouched.
//! Real apt and dpkg-deb; no host is contacted.

use std::path::Path;
use std::process::Command;

use super::{build_deb, build_deb_with, dpkg_status, offline_project, prepend};
use crate::support::{append, drover_in, ok, Fleet};

const AMD64: &str = "debian-12-amd64";
const ARM64: &str = "debian-12-arm64";

/// These tests need the controller's apt to know arm64 (scripts/deps does
/// it); say so rather than fail on a confusing resolution error.
fn require_arm64_lists() {
    let out = Command::new("dpkg").arg("--print-foreign-architectures").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "arm64"),
        "the controller's dpkg has no arm64 architecture: run scripts/deps (`dpkg --add-architecture arm64 && apt-get update`)"
    );
}

fn read_lock(proj: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(proj.join("packages.lock")).unwrap()).unwrap()
}

fn target<'a>(lock: &'a toml::Table, name: &str) -> &'a toml::Value {
    let targets = lock["targets"].as_array().unwrap();
    targets.iter().find(|t| t["target"].as_str() == Some(name)).unwrap_or_else(|| panic!("no {name} in {lock}"))
}

fn target_names(lock: &toml::Table) -> Vec<&str> {
    lock["targets"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap()).collect()
}

/// Role `site`'s closure on `t` is `names`, and every locked entry (closure
/// and base) is of `arch` or `all`, cached under its blake3 with its size,
/// and is the `.deb` of that name, version and architecture.
fn assert_closure(proj: &Path, t: &toml::Value, arch: &str, names: &[&str]) {
    let roles: Vec<&str> = t["roles"]["site"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(roles, names, "{t}");
    let entries =
        ["packages", "base"].into_iter().flat_map(|k| t.get(k).and_then(|v| v.as_array()).into_iter().flatten());
    for p in entries {
        let (name, version, parch) =
            (p["name"].as_str().unwrap(), p["version"].as_str().unwrap(), p["arch"].as_str().unwrap());
        assert!(parch == arch || parch == "all", "{name} is {parch}, not {arch}: {t}");
        let blake3 = p["blake3"].as_str().unwrap();
        let file = proj.join(".drover/packages").join(format!("{blake3}.deb"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{name}: {}: {e}", file.display()));
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), blake3, "{name}: the cached file's blake3");
        assert_eq!(p["size"].as_integer(), Some(bytes.len() as i64), "{name}: size");
        let f = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&file)
            .args(["Package", "Version", "Architecture"])
            .output()
            .unwrap();
        let fields = String::from_utf8_lossy(&f.stdout).to_string();
        assert_eq!(
            fields,
            format!("Package: {name}\nVersion: {version}\nArchitecture: {parch}\n"),
            "the cached .deb is not the locked package"
        );
    }
}

#[test]
fn an_arm64_closure_locks_from_the_controllers_multiarch_apt_and_the_amd64_target_beside_it_is_unchanged() {
    require_arm64_lists();
    let (_d, proj) = offline_project("packages = [\"sl\"]\n");
    ok(&drover_in(&proj, &["packages", "lock", "--target", AMD64]));
    let amd64 = target(&read_lock(&proj), AMD64).clone();
    assert_closure(&proj, &amd64, "amd64", &["libncurses6", "sl"]);

    let r = drover_in(&proj, &["packages", "lock", "--target", ARM64]);
    ok(&r);
    let lock = read_lock(&proj);
    assert_eq!(target_names(&lock), [AMD64, ARM64], "adding arm64 dropped or reordered a target");
    assert_eq!(target(&lock, AMD64), &amd64, "the amd64 target changed when arm64 was added");
    let arm64 = target(&lock, ARM64);
    assert_closure(&proj, arm64, "arm64", &["libncurses6", "sl"]);
    let sl = arm64["packages"].as_array().unwrap().iter().find(|p| p["name"].as_str() == Some("sl")).unwrap();
    assert_eq!(sl["arch"].as_str(), Some("arm64"), "{arm64}");
    assert!(r.stdout.contains(&format!("{ARM64}: 2 packages")) && r.stdout.contains(" arm64"), "{}", r.stdout);
    // sl needs libc6 (>= 2.17): recorded as arm64 libc6, for hosts behind.
    let base: Vec<(&str, &str)> = arm64["base"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["arch"].as_str().unwrap()))
        .collect();
    assert!(base.contains(&("libc6", "arm64")), "{base:?}");

    // A plain relock (what a changed role's error says to run) resolves
    // every locked target again and drops none.
    ok(&drover_in(&proj, &["packages", "lock"]));
    let again = read_lock(&proj);
    assert_eq!(target_names(&again), [AMD64, ARM64]);
    assert_eq!(target(&again, AMD64), &amd64);
    assert_eq!(target(&again, ARM64), target(&lock, ARM64));
}

#[test]
fn an_arm64_closure_locks_from_a_directory_of_arm64_debs_alone() {
    require_arm64_lists();
    let (_d, proj) = offline_project("packages = [\"sl\"]\n");
    // sl and every package it needs, as `apt-get download` fetches them.
    let closure = ["gcc-12-base", "libc6", "libgcc-s1", "libncurses6", "libtinfo6", "sl"];
    let debs = proj.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let out = Command::new("apt-get")
        .current_dir(&debs)
        .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
        .args(closure.iter().map(|n| format!("{n}:arm64")))
        .output()
        .unwrap();
    assert!(out.status.success(), "apt-get download: {}", String::from_utf8_lossy(&out.stderr));
    append(&proj.join("drover.toml"), "\n[packages]\nsources = [\"debs\"]\n");

    ok(&drover_in(&proj, &["packages", "lock", "--target", ARM64]));
    let lock = read_lock(&proj);
    assert_eq!(target_names(&lock), [ARM64]);
    let arm64 = target(&lock, ARM64);
    // A directory has no Essential packages, so nothing counts as base.
    assert_closure(&proj, arm64, "arm64", &closure);
    for p in arm64["packages"].as_array().unwrap() {
        let file = debs.join(p["filename"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), p["blake3"].as_str().unwrap(), "{}", file.display());
    }
}

#[test]
fn a_target_the_controllers_apt_cannot_serve_is_refused_naming_the_fix_and_nothing_is_written() {
    let (_d, proj) = offline_project("packages = [\"sl\"]\n");
    for (target, want) in [
        (
            "debian-12-armhf",
            "the controller's apt has no armhf package lists; run `dpkg --add-architecture armhf && apt-get update` on the controller, or add a directory of armhf .deb files",
        ),
        ("debian-11-arm64", "serves its own release (debian-12) only; add a directory of debian-11-arm64 .deb files"),
    ] {
        let r = drover_in(&proj, &["packages", "lock", "--target", target]);
        assert_ne!(r.code, 0, "{target}: {}", r.stdout);
        assert!(r.stderr.contains(&format!("target {target}")) && r.stderr.contains(want), "{target}: {}", r.stderr);
        assert!(!proj.join("packages.lock").exists(), "{target}: a refused lock was written");
    }
}

/// `Architecture: all` packages serve every target; `--target` adds one and
/// keeps the others as locked (not re-resolved: a source's newer file does
/// not slip into them) while the roles ask for the same packages, and
/// resolves them all again when a role's packages changed (the lock answers
/// one set of requests, for every target).
#[test]
fn an_added_target_keeps_the_others_until_a_role_changes_and_all_packages_serve_every_arch() {
    let (_d, proj) = offline_project("packages = [\"drover-a\"]\n");
    build_deb(&proj, "drover-a", "", "#!/bin/sh\n");
    build_deb(&proj, "drover-b", "", "#!/bin/sh\n");
    append(&proj.join("drover.toml"), "\n[packages]\nsources = [\"debs\"]\n");
    ok(&drover_in(&proj, &["packages", "lock", "--target", AMD64, "--target", ARM64]));
    let lock = read_lock(&proj);
    assert_eq!(target_names(&lock), [AMD64, ARM64]);
    for t in [AMD64, ARM64] {
        assert_closure(&proj, target(&lock, t), "all", &["drover-a"]);
    }
    assert_eq!(target(&lock, AMD64)["packages"], target(&lock, ARM64)["packages"], "one all .deb, both targets");
    let amd64 = target(&lock, AMD64).clone();

    // The same version rebuilt: re-locking arm64 takes it; amd64 stays.
    build_deb_with(&proj, "drover-a", "", "#!/bin/sh\n", b"rebuilt\n");
    ok(&drover_in(&proj, &["packages", "lock", "--target", ARM64]));
    let lock = read_lock(&proj);
    assert_eq!(target_names(&lock), [AMD64, ARM64]);
    assert_eq!(target(&lock, AMD64), &amd64, "a target not named was re-resolved");
    assert_ne!(target(&lock, ARM64)["packages"], amd64["packages"], "the named target was not re-resolved");

    let site = proj.join("roles/site.toml");
    let text = std::fs::read_to_string(&site).unwrap().replace("[\"drover-a\"]", "[\"drover-a\", \"drover-b\"]");
    std::fs::write(&site, text).unwrap();
    ok(&drover_in(&proj, &["packages", "lock", "--target", ARM64]));
    let lock = read_lock(&proj);
    assert_eq!(target_names(&lock), [AMD64, ARM64]);
    for t in [AMD64, ARM64] {
        assert_closure(&proj, target(&lock, t), "all", &["drover-a", "drover-b"]);
    }
    assert_eq!(target(&lock, AMD64)["packages"], target(&lock, ARM64)["packages"], "amd64 kept a stale drover-a");
}

/// A lock with both targets, applied to a real (amd64) lab host: the host
/// installs its own target's closure, the amd64 `.deb` files, at the amd64
/// versions; the arm64 ones are for arm64 hosts only.
#[test]
fn a_host_of_a_lock_with_amd64_and_arm64_installs_its_own_targets_closure() {
    require_arm64_lists();
    let f = Fleet::new("pkg-arch", 1);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    ok(&f.drover(&["packages", "lock", "--target", AMD64, "--target", ARM64]));
    let lock = read_lock(&f.project());
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    for p in target(&lock, AMD64)["packages"].as_array().unwrap() {
        let (name, version) = (p["name"].as_str().unwrap(), p["version"].as_str().unwrap());
        assert_eq!(dpkg_status(&f, name), format!("install ok installed {version}"), "{name}");
        let arch = f.host_sh(0, &format!("dpkg-query -W -f='${{Architecture}}' {name}"));
        assert_eq!(arch, "amd64", "{name}");
    }
}
