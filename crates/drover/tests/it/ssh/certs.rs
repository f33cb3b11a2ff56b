//! SSH certificates on a lab made with `lab up --ssh-ca` (docs/ssh.md,
//! "Certificates"): hosts trust only the CA for logins, and present host
//! certificates instead of pinned keys.

use super::tools::{keygen, login, public, said};
use crate::support::Fleet;

/// Items 3-4: a host whose root has no authorized key accepts the lab key's
/// user certificate; its host certificate is accepted through the
/// inventory's `cert-authority` and through an `@cert-authority` line
/// recorded by `drover trust --ca`, with no host key pinned anywhere.
#[test]
fn a_ca_lab_is_reached_by_user_and_host_certificates_with_no_pinned_key() {
    let f = Fleet::with_ssh_ca("ssh-ca", 1);
    let lab = drover_lab::Lab::open(f.lab_name()).unwrap();
    let authorized = std::fs::read_to_string(f.host_file(0, "/root/.ssh/authorized_keys")).unwrap();
    assert!(authorized.trim().is_empty(), "root trusts the CA only: {authorized:?}");
    let inv_path = f.project().join("inventory.toml");
    let inv = std::fs::read_to_string(&inv_path).unwrap();
    assert!(inv.contains("cert-authority = ") && !inv.contains("host-key"), "{inv}");
    assert!(
        !f.project().join("known_hosts").exists()
            || std::fs::read_to_string(f.project().join("known_hosts")).unwrap().trim().is_empty()
    );

    let r = login(&f, &[]);
    assert_eq!(r.code, 0, "user certificate and host certificate:\n{}", said(&r));

    // The same CA as an @cert-authority line instead of the inventory field.
    let without: String = inv.lines().filter(|l| !l.starts_with("cert-authority")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&inv_path, without).unwrap();
    let r = login(&f, &[]);
    assert_ne!(r.code, 0, "no pin and no CA: refused\n{}", said(&r));
    let ca_pub = lab.dir().join("ssh_ca.pub");
    let r = f.drover(&["trust", "--ca", &ca_pub.display().to_string(), "--ca-hosts", "h*"]);
    assert_eq!(r.code, 0, "{}", said(&r));
    let known = std::fs::read_to_string(f.project().join("known_hosts")).unwrap();
    assert!(known.starts_with("@cert-authority h* ssh-ed25519 "), "{known}");
    let r = login(&f, &[]);
    assert_eq!(r.code, 0, "@cert-authority line:\n{}", said(&r));

    // `drover trust` sees the certificate and pins nothing.
    let r = f.drover(&["trust"]);
    assert_eq!(r.code, 0, "{}", said(&r));
    assert!(r.stdout.contains("presents a host certificate") && r.stdout.contains("no pin needed"), "{}", r.stdout);
    let known_after = std::fs::read_to_string(f.project().join("known_hosts")).unwrap();
    assert_eq!(known, known_after, "nothing pinned");
}

/// Item 3: a host certificate signed by a CA the project does not trust is
/// refused, and the error names the CA and what to do.
#[test]
fn a_host_certificate_from_another_ca_is_refused_naming_the_ca() {
    let f = Fleet::with_ssh_ca("ssh-ca-other", 1);
    let tmp = tempfile::tempdir().unwrap();
    let other = keygen(tmp.path(), "other_ca", "ed25519", "");
    let inv_path = f.project().join("inventory.toml");
    let inv = std::fs::read_to_string(&inv_path).unwrap();
    let other_line: String = public(&other).split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let swapped: String = inv
        .lines()
        .map(|l| {
            if l.starts_with("cert-authority") {
                format!("cert-authority = {other_line:?}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&inv_path, swapped).unwrap();
    let r = login(&f, &[]);
    assert_ne!(r.code, 0, "{}", said(&r));
    let text = said(&r);
    assert!(
        text.contains("host certificate refused")
            && text.contains("not trusted")
            && text.contains("signed by CA SHA256:"),
        "{text}"
    );
}
