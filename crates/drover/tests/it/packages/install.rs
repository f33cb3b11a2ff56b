//! Packages installed on lab hosts with no mirror route: from the cache,
//! failing maintainer scripts, an agent killed mid-install, removal, drift.

use super::{dpkg_status, failing_deb, prepend};
use crate::support::{append, Fleet};

#[test]
fn packages_install_from_the_cache_on_a_host_without_a_mirror_route_and_a_second_apply_runs_no_dpkg() {
    let f = Fleet::new("pkg-offline", 1);
    // No route anywhere but the lab's own link: no mirror is reachable.
    let routes = f.host_sh(0, "ip route show default; ip -6 route show default");
    assert_eq!(routes, "", "the lab host has a default route");
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let hosts = f.apply_ok();
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
    let hosts = f.apply_ok();
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

#[test]
fn a_failing_maintainer_script_fails_the_generation_with_files_not_swapped_and_dpkgs_output_shown() {
    let f = Fleet::new("pkg-fail", 1);
    f.apply_ok();
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
    f.apply_ok();
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
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
}

#[test]
fn packages_absent_are_removed_and_a_rollback_does_not_reinstall_them() {
    let f = Fleet::new("pkg-absent", 1);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    f.apply_ok();
    assert!(dpkg_status(&f, "sl").starts_with("install ok installed"));
    let role = f.project().join("roles/site.toml");
    let text = std::fs::read_to_string(&role).unwrap().replace("packages = [\"sl\"]", "packages-absent = [\"sl\"]");
    std::fs::write(&role, text).unwrap();
    let hosts = f.apply_ok();
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
fn a_package_removed_by_hand_is_drift_that_plan_shows_and_apply_reinstalls() {
    let f = Fleet::new("pkg-drift", 1);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    f.apply_ok();
    f.host_sh(0, "dpkg --remove sl >/dev/null 2>&1");
    assert!(!f.host_file(0, "/usr/games/sl").exists());
    let r = f.drover(&["plan", "--json"]);
    assert_eq!(r.hosts()[0]["outcome"], "planned", "{}", r.stdout);
    assert_eq!(r.hosts()[0]["setup"], serde_json::json!(["package sl 5.02-1+b1 not installed"]), "{}", r.stdout);
    let st = f.drover(&["status", "--json"]);
    assert!(st.stdout.contains("package sl 5.02-1+b1 not installed"), "drift not reported: {}", st.stdout);
    let hosts = f.apply_ok();
    assert_eq!(hosts[0]["outcome"], "changed", "{hosts:?}");
    assert!(f.host_file(0, "/usr/games/sl").is_file(), "sl not reinstalled");
    assert_eq!(f.apply_ok()[0]["outcome"], "unchanged");
}
