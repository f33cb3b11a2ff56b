//! apply, rollback and magic rollback through one bastion, every run over
//! one bastion session.

use std::fs;

use super::{assert_no_route, logins};
use crate::support::Fleet;

#[test]
fn apply_rollback_and_magic_rollback_through_one_bastion_with_one_bastion_login_per_run() {
    let f = Fleet::behind_bastion("jump-one", 2);
    let b = f.bastion();
    for h in f.lab_hosts() {
        assert_no_route(h);
    }
    let inv = fs::read_to_string(f.project().join("inventory.toml")).unwrap();
    assert!(inv.contains(&format!("proxy-jump = \"root@{}\"", b.address)), "{inv}");
    let known = fs::read_to_string(f.project().join("known_hosts")).unwrap();
    assert!(known.lines().any(|l| l == format!("{} {}", b.address, b.host_key)), "trust pinned the bastion: {known}");

    // apply: both hosts changed; one bastion login for the run (both hosts,
    // and the confirming second connection to each, share it).
    let before = logins(b);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts().iter().all(|h| h["outcome"] == "changed"), "{}", r.stdout);
    assert_eq!(logins(b) - before, 1, "one bastion session for the whole run");
    for h in f.lab_hosts() {
        assert!(logins(h) >= 2, "{} was logged into (apply + confirm): {}", h.name, logins(h));
    }

    // rollback: to generation 1 again, through the bastion.
    fs::write(f.project().join("layers/site/etc/motd"), "second\n").unwrap();
    assert_eq!(f.apply_json(&[]).code, 0);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "second\n");
    let before = logins(b);
    let out = f.drover(&["rollback", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.hosts().iter().all(|h| h["generation"] == 1), "{}", out.stdout);
    assert!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap().contains("managed by drover"));
    assert_eq!(logins(b) - before, 1, "one bastion session for the rollback");

    // Magic rollback: a generation that locks root out of h1 (a key nobody
    // has) cannot be confirmed through the bastion, and h1 reverts by itself.
    let keys = f.lock_root_out(0, &f.project().join("layers/site"));
    let r = f.apply_json(&["--confirm-timeout", "4s", "--hosts", "h1"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "failed", "{h}");
    assert!(h["error"].as_str().unwrap().contains("reverts it by itself"), "{h}");
    f.wait_keys_restored(0, &keys);
    fs::remove_dir_all(f.project().join("layers/site/root")).unwrap();
    // h1 is reachable through the bastion again, with root's own key.
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}
