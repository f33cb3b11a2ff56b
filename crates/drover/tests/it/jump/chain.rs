//! Two chained hops: the bastion, then h1, to reach h2. Neither h1 nor h2
//! is routable from here; `drover trust` pins h1 as a hop through the
//! bastion.

use std::fs;

use super::{assert_no_route, jump_of, logins};
use crate::support::Fleet;

#[test]
fn apply_rollback_and_magic_rollback_through_two_chained_hops() {
    let f = Fleet::behind_bastion("jump-two", 2);
    let (b, h1, h2) = (f.bastion(), &f.lab_hosts()[0], &f.lab_hosts()[1]);
    assert_no_route(h1);
    assert_no_route(h2);
    // h2 through bastion, then h1; deploy to h2 alone.
    let inv_path = f.project().join("inventory.toml");
    let inv = fs::read_to_string(&inv_path).unwrap();
    let h2_entry = format!("[hosts.h2]\naddress = \"{}\"\n", h2.address);
    assert!(inv.contains(&h2_entry), "{inv}");
    let chain = format!("{},root@{}", jump_of(&f), h1.address);
    fs::write(&inv_path, inv.replace(&h2_entry, &format!("{h2_entry}proxy-jump = \"{chain}\"\n"))).unwrap();
    let trust = f.drover(&["trust", "--hosts", "h2"]);
    assert_eq!(trust.code, 0, "{}\n{}", trust.stdout, trust.stderr);
    assert!(trust.stdout.contains(&format!("jump root@{}:22", h1.address)), "{}", trust.stdout);
    let known = fs::read_to_string(f.project().join("known_hosts")).unwrap();
    assert!(known.lines().any(|l| l == format!("{} {}", h1.address, h1.host_key)), "h1 pinned as a hop: {known}");

    let (b0, h10) = (logins(b), logins(h1));
    let r = f.apply_json(&["--hosts", "h2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hosts()[0]["outcome"], "changed", "{}", r.stdout);
    assert_eq!((logins(b) - b0, logins(h1) - h10), (1, 1), "one session per hop for the run");
    assert!(fs::read_to_string(f.host_file(1, "/etc/motd")).unwrap().contains("managed by drover"));

    fs::write(f.project().join("layers/site/etc/motd"), "second\n").unwrap();
    assert_eq!(f.apply_json(&["--hosts", "h2"]).code, 0);
    assert_eq!(fs::read_to_string(f.host_file(1, "/etc/motd")).unwrap(), "second\n");
    let out = f.drover(&["rollback", "--hosts", "h2", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.hosts()[0]["generation"], 1, "{}", out.stdout);
    assert!(fs::read_to_string(f.host_file(1, "/etc/motd")).unwrap().contains("managed by drover"));

    // Magic rollback on h2, two hops away.
    let keys = f.lock_root_out(1, &f.project().join("layers/site"));
    let r = f.apply_json(&["--confirm-timeout", "4s", "--hosts", "h2"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.hosts()[0]["error"].as_str().unwrap().contains("reverts it by itself"), "{}", r.stdout);
    f.wait_keys_restored(1, &keys);
}
