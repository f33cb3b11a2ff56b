//! `drover lab up --bastion` itself: the route it takes away, what `up`
//! prints, and `down` leaving nothing behind (the `unreachable` route
//! included, which outlives the bridge).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::support::lab::{leftovers, TestLab};

fn route_to(address: &str) -> String {
    let out = Command::new("ip").args(["route", "get", address]).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn lab_up_bastion_leaves_a_route_to_the_bastion_alone_and_down_removes_it_all() {
    let lab = TestLab::new("bastion");
    let out = lab.ok(&["up", "2", "--bastion"]);
    assert!(out.contains("behind bastion 10.213."), "{out}");
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(lab.dir().join("state.json")).unwrap()).unwrap();
    let idx = state["index"].to_string();
    let (b, h1) = (format!("10.213.{idx}.10"), format!("10.213.{idx}.11"));
    assert_eq!(state["bastion"]["address"], b.as_str(), "{state}");
    assert!(route_to(&b).contains(&format!("dev dl{idx}br")), "the bastion is routable: {}", route_to(&b));
    assert!(route_to(&h1).contains("No route to host"), "a host is not: {}", route_to(&h1));

    // Again: idempotent, and still isolated.
    lab.ok(&["up", "2"]);
    assert!(route_to(&h1).contains("No route to host"), "{}", route_to(&h1));
    let inv = lab.ok(&["inventory"]);
    assert!(inv.contains(&format!("proxy-jump = \"root@{b}\"")), "{inv}");

    let inodes: Vec<u64> =
        (0..=2).filter_map(|n| fs::metadata(format!("/run/netns/dl{idx}h{n}")).ok().map(|m| m.ino())).collect();
    assert_eq!(inodes.len(), 3, "the bastion and two hosts have namespaces");
    lab.ok(&["down"]);
    let left = leftovers(&lab.dir(), &idx, &inodes);
    assert!(left.is_empty(), "left behind: {left:#?}");
    let routes =
        String::from_utf8_lossy(&Command::new("ip").args(["route", "show"]).output().unwrap().stdout).to_string();
    assert!(!routes.contains(&format!("10.213.{idx}.0/24")), "the unreachable route outlived the lab: {routes}");
}
