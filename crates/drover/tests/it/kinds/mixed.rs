//! One project applied to a fleet of five kinds of host at once.

use std::fs;

use drover_lab::{Arch, Init, Kind, Userland};

use super::{agent_machine, prepend};
use crate::support::{curl, Fleet};

/// A fleet of amd64 runit, amd64 systemd, arm64 runit (emulated), OpenRC
/// and busybox-userland hosts, one inventory, one project:
/// - the first apply converges every host at once, each running the agent
///   built for its own machine, web running, healthy and serving its page;
/// - `sl` is locked for both architectures the fleet has and each host gets
///   its own target's closure from dpkg;
/// - a template change rolled out in batches of two restarts web on every
///   host, whatever supervises it;
/// - a second apply changes nothing anywhere.
#[test]
fn one_project_converges_a_mixed_fleet_of_runit_systemd_arm64_openrc_and_busybox_hosts_at_once() {
    let kinds = [
        Kind::runit(),
        Kind::native(Init::Systemd),
        Kind::runit().with_arch(Arch::Arm64),
        Kind::native(Init::OpenRc),
        Kind::runit().with_userland(Userland::Busybox),
    ];
    let f = Fleet::mixed("mixed", &kinds);
    let by_name = |hosts: &[serde_json::Value], i: usize| {
        let name = &f.lab_hosts()[i].name;
        hosts.iter().find(|h| h["host"] == name.as_str()).unwrap_or_else(|| panic!("{name} missing: {hosts:?}")).clone()
    };

    let hosts = f.apply_ok();
    assert_eq!(hosts.len(), kinds.len(), "{hosts:?}");
    let mut pids = vec![];
    for (i, kind) in kinds.iter().enumerate() {
        let h = by_name(&hosts, i);
        assert_eq!(
            (h["outcome"].as_str(), h["restarts"].clone()),
            (Some("changed"), serde_json::json!(["web"])),
            "{kind}: {h}"
        );
        let name = &f.lab_hosts()[i].name;
        let page = curl(&format!("http://{}:8080/", f.lab_hosts()[i].address));
        assert!(page.contains(&format!("host: {name}")), "{kind}: {page}");
        assert_eq!(f.host_sh(i, "uname -m"), kind.arch.machine(), "{kind}");
        assert_eq!(agent_machine(&f, i), kind.arch.machine(), "{kind}: the agent of another machine");
        let pid = f.service_pid(i, "web");
        assert!(!pid.is_empty(), "{kind}: web has no pid");
        pids.push(pid);
    }
    let st: serde_json::Value = serde_json::from_str(&f.drover(&["status", "--json"]).stdout).unwrap();
    for h in st.as_array().unwrap() {
        let web = h["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap();
        assert_eq!((web["state"].as_str(), web["healthy"].as_bool()), (Some("running"), Some(true)), "{h:#}");
    }

    // Packages, per architecture.
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let hosts = f.apply_ok();
    let lock: toml::Table = toml::from_str(&fs::read_to_string(f.project().join("packages.lock")).unwrap()).unwrap();
    let mut targets: Vec<&str> =
        lock["targets"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap()).collect();
    targets.sort_unstable();
    assert_eq!(targets, ["debian-12-amd64", "debian-12-arm64"]);
    for (i, kind) in kinds.iter().enumerate() {
        assert_eq!(by_name(&hosts, i)["outcome"], "changed", "{kind}");
        let status = f.host_sh(i, "dpkg-query -W -f '${Status} ${Architecture}' sl");
        assert_eq!(status, format!("install ok installed {}", kind.arch), "{kind}");
    }

    // A template change, rolled out two hosts at a time behind the health
    // gates, restarts web everywhere.
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    crate::support::append(&f.project().join("roles/site.toml"), "\n[rollout]\nbatch = 2\n");
    let r = f.drover(&["rollout", "start", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["status"].as_str(), v["batches"].as_array().map(Vec::len)), (Some("done"), Some(3)), "{v:#}");
    for (i, kind) in kinds.iter().enumerate() {
        let pid = f.service_pid(i, "web");
        assert!(!pid.is_empty() && pid != pids[i], "{kind}: web was not restarted ({} → {pid})", pids[i]);
        assert!(curl(&format!("http://{}:8080/", f.lab_hosts()[i].address)).contains("<h1>v2 "), "{kind}");
    }
    let hosts = f.apply_ok();
    assert!(hosts.iter().all(|h| h["outcome"] == "unchanged"), "{hosts:?}");
}
