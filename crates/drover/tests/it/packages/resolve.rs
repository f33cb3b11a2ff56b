//! Package resolution and the lock, refused before any host is contacted.

use super::{build_deb, build_deb_with, offline_project};
use crate::support::{append, drover_in};

#[test]
fn unknown_packages_and_unsatisfiable_versions_are_refused_before_any_host_is_contacted() {
    for (extra, want) in [
        ("packages = [\"no-such-package-drover\"]\n", "package \"no-such-package-drover\" is not known"),
        ("packages = [\"sl=0.0-0\"]\n", "package sl version \"0.0-0\" cannot be had"),
    ] {
        let (_d, proj) = offline_project(extra);
        let r = drover_in(&proj, &["plan"]);
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
    let r = drover_in(&proj, &["plan"]);
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
    let r = drover_in(&proj, &["packages", "lock"]);
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
    let drover = |args: &[&str]| drover_in(&proj, args);
    let r = drover(&["packages", "lock"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lock_text = std::fs::read_to_string(proj.join("packages.lock")).unwrap();
    let cache = proj.join(".drover/packages");
    let before: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
    // sl, libncurses6, drover-own, and the base packages they pin a version
    // of (libtinfo6, libc6: shipped only to hosts whose own is too old).
    let lock: toml::Table = toml::from_str(&lock_text).unwrap();
    let target = &lock["targets"].as_array().unwrap()[0];
    let mut locked: Vec<String> = ["packages", "base"]
        .iter()
        .flat_map(|k| target[*k].as_array().unwrap())
        .map(|p| format!("{}.deb", p["blake3"].as_str().unwrap()))
        .collect();
    locked.sort();
    locked.dedup();
    let mut cached: Vec<String> = before.iter().map(|n| n.to_string_lossy().into_owned()).collect();
    cached.sort();
    assert_eq!(cached, locked, "the cache holds exactly the locked files");
    let names: Vec<&str> = target["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["drover-own", "libncurses6", "sl"]);

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

/// A base package a role asks for by name (`perl-base`, to bring hosts up
/// to the controller's point release) is locked like any other, not dropped
/// because every Debian system has some version of it.
#[test]
fn a_base_package_asked_for_by_name_is_locked_not_silently_dropped() {
    let (_d, proj) = offline_project("packages = [\"perl-base\"]\n");
    let r = drover_in(&proj, &["packages", "lock"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(proj.join("packages.lock")).unwrap()).unwrap();
    let target = &lock["targets"].as_array().unwrap()[0];
    assert_eq!(target["roles"]["site"].as_array().unwrap(), &[toml::Value::from("perl-base")], "{target}");
    let pkgs = target["packages"].as_array().unwrap();
    assert!(pkgs.iter().any(|p| p["name"].as_str() == Some("perl-base")), "{target}");
    assert!(r.stdout.contains("perl-base"), "`drover packages lock` does not list it: {}", r.stdout);
}
