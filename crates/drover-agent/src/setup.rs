//! Bringing a host's packages, groups and users to what a generation says,
//! before its files swap (files may be owned by the new users, and the
//! services restarted after the swap may need the new packages).
//!
//! Only what is missing is done: a group or user that exists is left as it
//! is (unless its declared id differs: an error, since files would end up
//! owned by the wrong id), a package at its locked version is not touched.
//! Nothing here is undone by a rollback (documented in docs/project.md):
//! deleting a user strands the files it owns, and downgrading packages
//! reruns maintainer scripts that were never written to go backwards.

use std::path::Path;
use std::process::Command;

use drover_proto::{Hash, Manifest, Setup};

use crate::accounts::Accounts;
use crate::layout::Layout;
use crate::{bail, blobs, dpkg, Result};

/// What the host lacks of `setup`, one line each (for the no-op check).
pub fn drift(layout: &Layout, accounts: &Accounts, setup: &Setup) -> Vec<String> {
    let mut out = Vec::new();
    if !setup.packages.is_empty() || !setup.packages_absent.is_empty() {
        let installed = dpkg::installed(layout);
        let plan = dpkg::plan(&installed, &setup.packages);
        out.extend(plan.install.iter().map(dpkg::Install::describe));
        out.extend(plan.blocked);
        for n in setup.packages_absent.iter().filter(|n| installed.contains_key(*n)) {
            out.push(format!("package {n} installed (should be absent)"));
        }
    }
    out.extend(
        setup
            .groups
            .iter()
            .filter(|g| accounts.group_id(&g.name).is_none())
            .map(|g| format!("group {} missing", g.name)),
    );
    out.extend(
        setup.users.iter().filter(|u| accounts.user_id(&u.name).is_none()).map(|u| format!("user {} missing", u.name)),
    );
    out
}

/// Package blobs the host needs and does not have: those not installed at
/// their version (once installed, a `.deb` need not travel again), with the
/// offset each resumes from ([`blobs::resume_from`]; `repair` as there).
pub fn missing(layout: &Layout, m: &Manifest, repair: bool) -> Vec<(Hash, u64)> {
    if m.setup.packages.is_empty() {
        return vec![];
    }
    let installed = dpkg::installed(layout);
    dpkg::to_install(&installed, &m.setup.packages)
        .into_iter()
        .filter_map(|p| blobs::resume_from(layout, &p.hash, p.size, repair).map(|have| (p.hash, have)))
        .collect()
}

/// Create missing groups and users; with `packages`, install and remove
/// packages. Returns whether accounts were created (owners must then be
/// resolved again) and what was done, for the progress report.
pub fn run(layout: &Layout, accounts: &Accounts, setup: &Setup, packages: bool) -> Result<(bool, Vec<String>)> {
    let mut done = Vec::new();
    let mut created = false;
    for g in &setup.groups {
        match (accounts.group_id(&g.name), g.gid) {
            (Some(have), Some(want)) if have != want => {
                bail!("group {} exists with gid {have}, the role says {want}: change one of them", g.name)
            }
            (Some(_), _) => {}
            (None, gid) => {
                let mut c = tool(layout, "groupadd")?;
                if let Some(id) = gid {
                    c.args(["-g", &id.to_string()]);
                }
                if g.system {
                    c.arg("-r");
                }
                run_tool(c.arg("--").arg(&g.name))?;
                done.push(format!("created group {}", g.name));
                created = true;
            }
        }
    }
    for u in &setup.users {
        match (accounts.user_id(&u.name), u.uid) {
            (Some(have), Some(want)) if have != want => {
                bail!("user {} exists with uid {have}, the role says {want}: change one of them", u.name)
            }
            (Some(_), _) => {}
            (None, uid) => {
                let mut c = tool(layout, "useradd")?;
                if let Some(id) = uid {
                    c.args(["-u", &id.to_string()]);
                }
                // No primary group given: the group named like the user,
                // made by useradd unless it exists or this role declares it.
                let own_group = accounts.group_id(&u.name).is_some() || setup.groups.iter().any(|g| g.name == u.name);
                match &u.group {
                    Some(g) => c.args(["-g", g]),
                    None if own_group => c.args(["-g", &u.name]),
                    None => c.arg("-U"),
                };
                if !u.groups.is_empty() {
                    c.args(["-G", &u.groups.join(",")]);
                }
                match &u.home {
                    Some(h) => c.args(["-d", h, "-m"]),
                    None => c.arg("-M"),
                };
                if let Some(s) = &u.shell {
                    c.args(["-s", s]);
                }
                if u.system {
                    c.arg("-r");
                }
                run_tool(c.arg("--").arg(&u.name))?;
                done.push(format!("created user {}", u.name));
                created = true;
            }
        }
    }
    if packages && (!setup.packages.is_empty() || !setup.packages_absent.is_empty()) {
        let installed = dpkg::installed(layout);
        let plan = dpkg::plan(&installed, &setup.packages);
        if !plan.blocked.is_empty() {
            bail!("{}", plan.blocked.join("; "));
        }
        let install: Vec<&drover_proto::Package> = plan.install.iter().map(|i| i.package).collect();
        let absent = setup.packages_absent.iter().any(|n| installed.contains_key(n));
        if let Some(p) = install.iter().find(|p| !blobs::has(layout, &p.hash)) {
            bail!("package {} {}: its .deb ({}) was not received; apply again", p.name, p.version, p.hash.short());
        }
        if !install.is_empty() || absent {
            done.push(dpkg::run(layout, &install, &setup.packages_absent)?);
        }
    }
    Ok((created, done))
}

/// The host's own account tool, run against the target root. A host
/// without it (a minimal image) gets an error saying what to install.
fn tool(layout: &Layout, name: &str) -> Result<Command> {
    let path = ["/usr/sbin", "/sbin"].iter().map(|d| format!("{d}/{name}")).find(|p| layout.target(p).exists());
    let Some(path) = path else {
        bail!("{name} not found on this host (/usr/sbin/{name}): install the `passwd` package to let drover create accounts");
    };
    let mut c = Command::new(layout.target(&path));
    // The tools act on `/` unless told otherwise: a target root elsewhere
    // (a simulated host, a test's directory) is theirs to write.
    if layout.root() != Path::new("/") {
        c.arg("--root").arg(layout.root());
    }
    Ok(c)
}

fn run_tool(c: &mut Command) -> Result<()> {
    let out = c.output().map_err(|e| crate::AgentError::new(format!("run {:?}: {e}", c.get_program())))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            c.get_program(),
            c.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
