//! Packages on lab hosts that have no route to any package mirror (issue
//! 13, items 1 and 2): real apt and dpkg-deb on the controller, real dpkg
//! on hosts, the real agent. Users, groups, dirs and reload-on: `accounts.rs`.
//!
//! By topic: resolving and locking before any host is contacted
//! (`resolve`), installing on hosts (`install`), and packages in bundles
//! and over the relay (`carried`), hosts whose base system is behind or
//! ahead of the controller's apt (`base`), and locks for other
//! architectures than the controller's (`arch`: debian-12-arm64).

mod arch;
mod base;
mod carried;
mod install;
mod resolve;

use std::path::Path;
use std::process::Command;

use crate::support::{init_project, Fleet};

/// Top-level keys go before the file's first table.
fn prepend(path: &Path, text: &str) {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, format!("{text}{s}")).unwrap();
}

/// `dpkg-query` on host 0: "<status> <version>" of a package.
fn dpkg_status(f: &Fleet, pkg: &str) -> String {
    f.host_sh(0, &format!("dpkg-query -W -f='${{Status}} ${{Version}}' {pkg} 2>/dev/null || true"))
}

/// A project whose one host cannot be reached (nothing listens at the
/// address): any error must come from resolution, before connecting.
fn offline_project(role_extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("p");
    init_project(&proj);
    std::fs::write(proj.join("inventory.toml"), "[hosts.far]\naddress = \"192.0.2.1\"\nhost-key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1TPpVyCo8KkWnL4SgJvDfGq8r8R8mH2D0m9m0x6Rq2\"\n").unwrap();
    prepend(&proj.join("roles/site.toml"), role_extra);
    (dir, proj)
}

/// A .deb named `name` whose postinst prints a marker and fails.
fn failing_deb(dir: &Path, name: &str) {
    build_deb(dir, name, "", "#!/bin/sh\necho drover-test-postinst-failed >&2\nexit 1\n");
}

/// A small .deb in `dir/debs`, with extra control fields and a postinst.
fn build_deb(dir: &Path, name: &str, control_extra: &str, postinst: &str) {
    build_deb_with(dir, name, control_extra, postinst, b"x\n");
}

/// [`build_deb`] with `payload` as its one file.
fn build_deb_with(dir: &Path, name: &str, control_extra: &str, postinst: &str, payload: &[u8]) {
    let root = dir.join(format!("{name}-build"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/doc").join(name)).unwrap();
    std::fs::write(root.join("usr/share/doc").join(name).join("README"), payload).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\n{control_extra}Description: test\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("DEBIAN/postinst"), postinst).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("DEBIAN/postinst"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(debs.join(format!("{name}_1.0_all.deb")))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    std::fs::remove_dir_all(root).unwrap();
}
