//! Lab hosts that can run containers (`KIND+containers`, `lab up --containers`).
//!
//! What runc and dockerd need of a host, and an ordinary lab host lacks:
//!
//! - **cgroups**: the host's processes are in their own cgroup in *every*
//!   hierarchy (each v1 controller, `name=systemd`, cgroup2) and in a
//!   cgroup namespace rooted there ([`crate::cgroup::prepare_host_all`]);
//!   [`CGROUPS_SCRIPT`] mounts them inside the host at boot, so a runtime
//!   creates its containers' cgroups (memory and pids limits, the devices
//!   list) below the host's own, and `down` finds and removes them.
//! - **pivot_root**: the host's root is made the root of its mount
//!   namespace ([`PIVOT_SCRIPT`]) instead of `chroot`, under which the
//!   kernel refuses user namespaces.
//! - **a store off the overlay**: `hosts/h<n>/store/{containers,docker}` on
//!   the controller's file system, bind-mounted at [`STORE_DIR`] and
//!   `/var/lib/docker`, so dockerd's overlay2 driver does not stack an
//!   overlay on the host's overlay (the kernel refuses) and images do not
//!   fill the host's upper directory. `down` unmounts and removes it with
//!   the lab.
//!
//! Nothing here changes a base: everything is written into the host's own
//! layer at `up`, so container hosts share the cached base of their kind.
//! No runtime is installed: a host without runc is what drover must cope
//! with (tests install it from the controller's packages).

use std::fs;
use std::path::Path;

use crate::base::write_file;
use crate::config::LabPaths;
use crate::error::LabError;
use crate::init::Init;
use crate::sys;

/// Where a container host keeps container state and images: a directory on
/// the controller's file system, not the host's overlay.
pub const STORE_DIR: &str = "/var/lib/drover-containers";
/// The host paths bound to the store, with the store's subdirectory for each.
const STORE_MOUNTS: [(&str, &str); 2] = [("containers", STORE_DIR), ("docker", "/var/lib/docker")];

/// Mounts the host's cgroup hierarchies inside it (see the script).
const CGROUPS_SCRIPT: &str = include_str!("../assets/containers-cgroups.sh");
const CGROUPS_PATH: &str = "usr/local/sbin/drover-lab-cgroups";
/// runit: a stage-1 hook, run before any service (named to run first).
const RUNIT_HOOK: &str = "etc/runit/boot-run/00-drover-lab-cgroups.sh";
/// systemd: a oneshot unit before `sysinit.target`.
const SYSTEMD_UNIT: &str = include_str!("../assets/containers-cgroups.service");
const UNIT_NAME: &str = "drover-lab-cgroups.service";

/// The boot's last step on a container host, run by the controller's `sh`
/// with the host's root and init as `$1` and `$2`.
pub(crate) const PIVOT_SCRIPT: &str = include_str!("../assets/containers-pivot.sh");

/// Make host `n` (root at `merged`) container-capable: its store mounted,
/// its cgroup setup installed for `init`. Idempotent.
pub(crate) fn prepare(paths: &LabPaths, n: u16, merged: &Path, init: Init) -> Result<(), LabError> {
    let store = store_dir(paths, n);
    for (sub, at) in STORE_MOUNTS {
        let source = store.join(sub);
        let target = merged.join(at.trim_start_matches('/'));
        for d in [&source, &target] {
            fs::create_dir_all(d).map_err(LabError::io("create", d))?;
        }
        if !sys::is_mount_point(&target)? {
            sys::bind_mount(&source, &target)?;
        }
    }
    write_file(&merged.join(CGROUPS_PATH), CGROUPS_SCRIPT, 0o755)?;
    match init {
        Init::Runit => {
            let hook = format!("#!/bin/sh\n# Container host: mount its cgroups first.\nexec /{CGROUPS_PATH}\n");
            write_file(&merged.join(RUNIT_HOOK), &hook, 0o755)
        }
        Init::Systemd => {
            let units = merged.join("etc/systemd/system");
            write_file(&units.join(UNIT_NAME), SYSTEMD_UNIT, 0o644)?;
            let wants = units.join("sysinit.target.wants");
            fs::create_dir_all(&wants).map_err(LabError::io("create", &wants))?;
            let link = wants.join(UNIT_NAME);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("../{UNIT_NAME}"), &link).map_err(LabError::io("symlink", &link))?;
            }
            Ok(())
        }
        // Refused before anything is made (`Kind::unsupported`).
        Init::OpenRc => unreachable!("OpenRC container hosts are refused by Kind::unsupported"),
    }
}

/// Host `n`'s store on the controller (removed with the lab directory).
pub fn store_dir(paths: &LabPaths, n: u16) -> std::path::PathBuf {
    paths.host_dir(n).join("store")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pivot script is what runs the host's init, so it must pivot
    /// (never chroot) and end by exec'ing `$2`; the cgroup script must
    /// leave the tree read-only as systemd expects, and mount every line
    /// of /proc/self/cgroup (the controllers are what runc needs).
    #[test]
    fn scripts_pivot_and_mount_every_hierarchy() {
        assert!(PIVOT_SCRIPT.contains("pivot_root . mnt") && PIVOT_SCRIPT.contains("umount -l /mnt"));
        assert!(PIVOT_SCRIPT.trim_end().ends_with("exec \"$2\"") && !PIVOT_SCRIPT.contains("\nchroot"));
        assert!(CGROUPS_SCRIPT.contains("done </proc/self/cgroup"));
        assert!(CGROUPS_SCRIPT.trim_end().ends_with("mount -o remount,ro,bind \"$cg\""));
        assert!(SYSTEMD_UNIT.contains(&format!("ExecStart=/{CGROUPS_PATH}")));
    }

    /// A host's store lives in its own directory of the lab, which `down`
    /// removes (the bind mounts need root: the lab tests check those).
    #[test]
    fn store_is_under_the_host_dir_so_down_removes_it() {
        let paths = LabPaths { dir: "/var/lib/drover-lab/x".into() };
        assert_eq!(store_dir(&paths, 3), Path::new("/var/lib/drover-lab/x/hosts/h3/store"));
        assert!(STORE_MOUNTS.iter().all(|(sub, at)| !sub.contains('/') && at.starts_with("/var/lib/")));
    }
}
