//! A failure behind a bastion names where it happened: the bastion's host
//! key, a login the bastion refuses, the bastion down, or a host the bastion
//! cannot reach, each in the
//! host's `error` (the table and `--json` carry the same message).

use std::fs;

use super::{in_lab_host, jump_of};
use crate::support::Fleet;

#[test]
fn errors_through_a_bastion_name_the_hop_that_failed() {
    let f = Fleet::behind_bastion("jump-err", 2);
    let (b, h1) = (f.bastion(), &f.lab_hosts()[0]);
    let hop = format!("jump host {}:22 (hop 1 of 1)", jump_of(&f));
    let error_of = |args: &[&str]| {
        let mut all = vec!["--retries", "0", "--hosts", "h1"];
        all.extend_from_slice(args);
        let r = f.apply_json(&all);
        assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
        let e = r.hosts()[0]["error"].as_str().unwrap().to_string();
        let table = f.drover(&["apply", "--retries", "0", "--hosts", "h1"]);
        assert!(table.stdout.contains(&e), "the table says the same:\n{}", table.stdout);
        e
    };

    // The bastion presents another key than the one pinned for it.
    let known_path = f.project().join("known_hosts");
    let known = fs::read_to_string(&known_path).unwrap();
    fs::write(&known_path, known.replace(&b.host_key, &h1.host_key)).unwrap();
    let e = error_of(&[]);
    assert!(e.starts_with(&format!("{hop}: {}:22: host key changed", b.address)), "{e}");
    fs::write(&known_path, &known).unwrap();

    // The bastion refuses the login (root's key no longer authorized there),
    // while the host behind it would accept it.
    let auth_keys = b.root.join("root/.ssh/authorized_keys");
    let authorized = fs::read_to_string(&auth_keys).unwrap();
    fs::write(&auth_keys, "").unwrap();
    let e = error_of(&[]);
    assert!(e.starts_with(&format!("{hop}: {}:22: authentication as root failed", b.address)), "{e}");
    fs::write(&auth_keys, &authorized).unwrap();

    // A host the bastion cannot reach (its sshd stopped): the host is named,
    // and the bastion as the one that could not reach it.
    let down = in_lab_host(h1, &["sv", "down", "/etc/service/sshd"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let e = error_of(&[]);
    assert!(e.starts_with(&format!("{}:22: unreachable through jump host {}:22", h1.address, jump_of(&f))), "{e}");
    assert!(e.contains("could not connect to it"), "{e}");
    assert_eq!(in_lab_host(h1, &["sv", "up", "/etc/service/sshd"]).code, 0);

    // The bastion's own sshd stopped: the bastion is named, not the host.
    let down = in_lab_host(b, &["sv", "down", "/etc/service/sshd"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let e = error_of(&[]);
    assert!(e.starts_with(&format!("{hop}: {}:22: cannot connect", b.address)), "{e}");
    assert_eq!(in_lab_host(b, &["sv", "up", "/etc/service/sshd"]).code, 0);
    crate::support::wait_until("the bastion's sshd back", std::time::Duration::from_secs(20), || {
        drover_lab::ssh_banner(std::net::SocketAddr::from((b.address, 22)), std::time::Duration::from_secs(1))
            .ok()
            .filter(|x| x.starts_with("SSH-"))
    });
    let r = f.apply_json(&["--hosts", "h1"]);
    assert_eq!(r.code, 0, "all well again: {}\n{}", r.stdout, r.stderr);
}
