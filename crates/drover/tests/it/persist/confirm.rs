//! The magic rollback's confirmation proves a new login still works: it
//! never goes through the resident's held session.

use std::fs;

use super::{enable, logins, vias, warm_up, Residents};
use crate::support::Fleet;

#[test]
fn a_change_through_the_resident_is_confirmed_over_a_fresh_login() {
    let f = Fleet::new("persist-confirm", 1);
    let res = Residents::new();
    enable(&f, "1m");
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    fs::write(f.project().join("layers/site/srv/site/index.html.j2"), "v2 {{ generation }}\n").unwrap();
    let before = logins(&f)[0];
    let r = res.drover(&f, &["apply", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("changed"), Some(2)), "{h}");
    assert!(h["phases"]["confirm_ms"].as_f64().unwrap() > 0.0, "confirmed: {h}");
    assert_eq!(vias(&r), ["resident"], "the change itself went through the resident");
    assert_eq!(logins(&f)[0] - before, 1, "exactly one login: the confirmation's");
    assert_eq!(fs::read_to_string(f.host_file(0, "/srv/site/index.html")).unwrap(), "v2 2\n");
}
