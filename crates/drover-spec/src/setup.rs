//! A role's packages, users, groups and directories: read from
//! `roles/<role>.toml`, validated up front, merged per host at compile.

use drover_proto::{check_path, check_word, GroupSpec, UserSpec};

use crate::diag::SpecError;
use crate::files::RoleFile;

/// What one role declares besides files and services.
#[derive(Debug, Clone, Default)]
pub struct RoleSetup {
    /// As written (`name` or `name=version`), in order.
    pub packages: Vec<String>,
    pub packages_absent: Vec<String>,
    pub users: Vec<UserSpec>,
    pub groups: Vec<GroupSpec>,
    /// (path, owner, group, mode): managed directories.
    pub dirs: Vec<(String, String, String, u32)>,
}

/// A package request split into name and optional exact version.
pub fn split_request(req: &str) -> (&str, Option<&str>) {
    match req.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (req.trim(), None),
    }
}

pub fn load(rf: &RoleFile, fname: &str, text: &str) -> Result<RoleSetup, SpecError> {
    let bad = |span: std::ops::Range<usize>, m: String, help: &str| SpecError::at(fname, text, span, m, "here", help);
    let mut out = RoleSetup::default();
    for p in &rf.packages {
        let (name, version) = split_request(p.get_ref());
        let checks = check_word(name).and_then(|()| version.map_or(Ok(()), check_word));
        checks.map_err(|m| {
            bad(
                p.span(),
                format!("package {:?}: {m}", p.get_ref()),
                "write a Debian package name, optionally name=version",
            )
        })?;
        out.packages.push(p.get_ref().trim().to_string());
    }
    for p in &rf.packages_absent {
        check_word(p.get_ref()).map_err(|m| bad(p.span(), format!("package {m}"), "write a Debian package name"))?;
        out.packages_absent.push(p.get_ref().clone());
    }
    if let Some(p) = out.packages.iter().find(|p| out.packages_absent.iter().any(|a| a == split_request(p).0)) {
        return Err(SpecError::file(
            std::path::Path::new(fname),
            format!("package {p} is both in packages and packages-absent"),
            "keep it in one of the two lists",
        ));
    }
    for (name, g) in &rf.groups {
        check_word(name).map_err(|m| bad(g.span(), format!("group {m}"), "use a valid group name"))?;
        out.groups.push(GroupSpec { name: name.clone(), gid: g.get_ref().gid, system: g.get_ref().system });
    }
    for (name, u) in &rf.users {
        let uf = u.get_ref();
        let spec = UserSpec {
            name: name.clone(),
            uid: uf.uid,
            group: uf.group.clone(),
            groups: uf.groups.clone(),
            home: uf.home.clone(),
            shell: uf.shell.clone(),
            system: uf.system,
        };
        let one = drover_proto::Setup { users: vec![spec.clone()], ..Default::default() };
        one.validate()
            .map_err(|m| bad(u.span(), format!("user {name}: {m}"), "use valid names and absolute home/shell paths"))?;
        out.users.push(spec);
    }
    for (path, a) in &rf.dirs {
        check_path(path).map_err(|m| bad(a.span(), m, "write the directory's absolute path"))?;
        let attrs = a.get_ref();
        let mode = match &attrs.mode {
            None => 0o755,
            Some(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| bad(a.span(), format!("mode {s:?} is not an octal permission"), "e.g. \"0750\""))?,
        };
        out.dirs.push((
            path.clone(),
            attrs.owner.clone().unwrap_or_else(|| "root".into()),
            attrs.group.clone().unwrap_or_else(|| "root".into()),
            mode,
        ));
    }
    Ok(out)
}

/// Merge the setups of a host's roles: users and groups by name (a later
/// role's declaration replaces an earlier one), absent packages as a set.
pub fn merge<'a>(roles: impl Iterator<Item = &'a RoleSetup>) -> drover_proto::Setup {
    use std::collections::BTreeMap;
    let mut users = BTreeMap::new();
    let mut groups = BTreeMap::new();
    let mut absent = std::collections::BTreeSet::new();
    for r in roles {
        users.extend(r.users.iter().map(|u| (u.name.clone(), u.clone())));
        groups.extend(r.groups.iter().map(|g| (g.name.clone(), g.clone())));
        absent.extend(r.packages_absent.iter().cloned());
    }
    drover_proto::Setup {
        packages: vec![],
        packages_absent: absent.into_iter().collect(),
        groups: groups.into_values().collect(),
        users: users.into_values().collect(),
    }
}
