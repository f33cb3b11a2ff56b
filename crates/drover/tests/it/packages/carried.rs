//! Locked packages carried by a bundle (to `apply --bundle` and to the
//! agent's own install), and host to host over the relay.

use std::path::Path;

use super::{build_deb_with, prepend};
use crate::support::{append, drover_in, ok, signed_bundle, usb_stick, Fleet};

#[test]
fn a_bundle_carries_the_locked_packages_to_apply_bundle_and_to_the_agents_own_install() {
    let f = Fleet::new("pkg-bundle", 2);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let (_keys, bundle, public) = signed_bundle(&f);
    let inspect = drover_in(Path::new("/"), &["bundle", "inspect", bundle.to_str().unwrap(), "--json"]);
    ok(&inspect);
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(f.project().join("packages.lock")).unwrap()).unwrap();
    for p in lock["targets"].as_array().unwrap()[0]["packages"].as_array().unwrap() {
        assert!(
            inspect.stdout.contains(p["blake3"].as_str().unwrap()),
            "bundle lacks {}: {}",
            p["name"],
            inspect.stdout
        );
    }

    // drover apply --bundle, with the project (and its package cache) away.
    let away = f.project().with_extension("away");
    std::fs::rename(f.project(), &away).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let r = drover_in(
        empty.path(),
        &[
            "apply",
            "--json",
            "--hosts",
            "h1",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
        ],
    );
    std::fs::rename(&away, f.project()).unwrap();
    ok(&r);
    assert_eq!(r.hosts()[0]["outcome"], "changed", "{}", r.stdout);
    assert!(f.host_file(0, "/usr/games/sl").is_file(), "h1: sl not installed from the bundle");

    // The host's own agent, from a USB stick: no controller, no network.
    usb_stick(&f, 1, &bundle, &public, "");
    let r =
        f.in_host(1, &["/media/usb/drover-agent", "install", "/media/usb/site.drv", "--pubkey", "/media/usb/ops.pub"]);
    ok(&r);
    assert!(r.stdout.contains("installed") && r.stdout.contains("sl=5.02"), "{}", r.stdout);
    assert!(f.host_file(1, "/usr/games/sl").is_file(), "h2: sl not installed by the agent's install");
}

#[test]
fn with_relay_the_locked_packages_travel_host_to_host_and_the_controller_sends_them_about_once() {
    let f = Fleet::new("pkg-relay", 3);
    // 1.5 MiB that does not compress: above the relay's 1 MiB threshold.
    let mut noise = Vec::with_capacity(3 << 19);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < 3 << 19 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    build_deb_with(&f.project(), "drover-big", "", "#!/bin/sh\n", &noise);
    append(&f.project().join("drover.toml"), "\n[packages]\nsources = [\"debs\", \"apt\"]\n");
    prepend(&f.project().join("roles/site.toml"), "packages = [\"drover-big\"]\n");
    let lock = f.drover(&["packages", "lock"]);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    let size = std::fs::metadata(f.project().join("debs/drover-big_1.0_all.deb")).unwrap().len();
    let r = f.apply_json(&["--relay", "--relay-min-mib", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let sent: u64 = r.hosts().iter().map(|h| h["bytes_sent"].as_u64().unwrap()).sum();
    // Direct, each of the 3 hosts would get the whole .deb from the controller.
    assert!(sent < 2 * size, "controller sent {sent} bytes for a {size}-byte package on 3 hosts: not relayed");
    for i in 0..3 {
        assert!(
            f.host_file(i, "/usr/share/doc/drover-big/README").is_file(),
            "h{}: the package is not installed",
            i + 1
        );
    }
}
