//! Patterns that match nothing drover manages: a service's `restart-on` or
//! `reload-on`, a role's `[files]`. Such a pattern has no effect (drover
//! restarts on, and sets attributes of, the paths it ships), so it is almost
//! always a typo, and accepting it silently left a service never restarted.
//! Checked against every path of every layer, every role's `[dirs]` and the
//! unit files drover writes for its services under any supervisor, so a
//! pattern aimed at another role's files is still accepted.

use std::collections::{BTreeMap, BTreeSet};

use drover_proto::Supervisor;
use globset::GlobMatcher;

use super::service::{Role, Service};
use crate::diag::SpecError;
use crate::layers::LayerFile;
use crate::units::{self, ServiceDef};

/// A role's `[files]` pattern as written, with where.
pub(super) struct FilesGlob {
    pub(super) file: String,
    pub(super) text: String,
    pub(super) span: std::ops::Range<usize>,
    pub(super) glob: String,
    pub(super) matcher: GlobMatcher,
}

pub(super) fn check(
    layers: &BTreeMap<String, Vec<LayerFile>>,
    roles: &BTreeMap<String, Role>,
    services: &BTreeMap<String, Service>,
    files: &[FilesGlob],
) -> Vec<SpecError> {
    let paths = managed_paths(layers, roles, services);
    let none = |m: &GlobMatcher| !paths.iter().any(|p| m.is_match(p));
    let mut errors = Vec::new();
    for f in files.iter().filter(|f| none(&f.matcher)) {
        errors.push(SpecError::at(
            &f.file,
            &f.text,
            f.span.clone(),
            format!("[files] {:?} matches no file of any layer", f.glob),
            "matches nothing",
            "[files] sets attributes of the files drover ships: fix the pattern (paths are absolute, as on the host, e.g. \"/etc/myapp/*.conf\")",
        ));
    }
    for svc in services.values() {
        for (_, span, what) in svc.globs.iter().filter(|(m, _, _)| none(m)) {
            errors.push(SpecError::at(
                &svc.file,
                &svc.text,
                span.clone(),
                format!("{what} matches no file of any layer"),
                "matches nothing",
                "drover restarts a service when files it ships change: fix the pattern (absolute paths as on the host, e.g. \"/etc/myapp/**\")",
            ));
        }
    }
    errors
}

fn managed_paths(
    layers: &BTreeMap<String, Vec<LayerFile>>,
    roles: &BTreeMap<String, Role>,
    services: &BTreeMap<String, Service>,
) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = layers.values().flatten().map(|f| f.target.clone()).collect();
    paths.extend(roles.values().flat_map(|r| r.setup.dirs.iter().map(|(p, ..)| p.clone())));
    for (name, svc) in services {
        for c in svc.container.iter().flat_map(|c| c.all()) {
            paths.extend(crate::container::rootfs::entries(name, c).into_iter().map(|(e, _)| e.path));
            for sup in [Supervisor::Runit, Supervisor::Systemd, Supervisor::OpenRc] {
                paths
                    .extend(crate::container::units::files(sup, name, name, c, &c.process).into_iter().map(|u| u.path));
            }
        }
        let Some(command) = &svc.command else { continue };
        let def = ServiceDef { name, command, user: &svc.user, env: &svc.env, stop: None, after: None };
        for sup in [Supervisor::Runit, Supervisor::Systemd, Supervisor::OpenRc] {
            paths.extend(units::files(sup, &def).into_iter().map(|u| u.path));
        }
    }
    paths
}
