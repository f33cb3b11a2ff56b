//! Many hosts behind one bastion converge over ONE bastion session: every
//! host's connections (apply and confirm) are channels of it.
//!
//! 20 hosts here (CI time); `bench/jump.sh` runs the same with 100.

use super::{assert_no_route, logins};
use crate::support::Fleet;

#[test]
fn twenty_hosts_behind_one_bastion_converge_over_one_bastion_session() {
    let f = Fleet::behind_bastion("jump-20", 20);
    let b = f.bastion();
    assert_no_route(&f.lab_hosts()[19]);
    let before = logins(b);
    let r = f.apply_json(&["--parallel", "20"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hosts().len(), 20);
    assert!(r.hosts().iter().all(|h| h["outcome"] == "changed"), "{}", r.stdout);
    assert_eq!(logins(b) - before, 1, "20 hosts, apply and confirm each, over one bastion login");
    let before = logins(b);
    let r = f.apply_json(&["--parallel", "20"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts().iter().all(|h| h["outcome"] == "unchanged"), "{}", r.stdout);
    assert_eq!(logins(b) - before, 1, "the no-op run too");
}
