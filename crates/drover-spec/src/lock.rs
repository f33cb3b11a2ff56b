//! `packages.lock`: the exact packages every host gets, per target
//! (OS release and architecture), written by `drover packages lock` and
//! read at every compile. The format is documented in docs/project.md.
//!
//! A compile never resolves: a role whose `packages` differ from what the
//! lock was made for is an error telling the operator to re-lock, so a
//! later apply can never pick up different bits silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use drover_proto::{Facts, Hash, Need, Package};
use serde::{Deserialize, Serialize};

use crate::diag::SpecError;

pub const LOCK_FILE: &str = "packages.lock";
pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageLock {
    pub version: u32,
    /// Each role's `packages` as written when the lock was made.
    pub requests: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub targets: Vec<LockTarget>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockTarget {
    /// `<os id>-<version id>-<dpkg arch>`, e.g. `debian-12-amd64` (see [`target_of`]).
    pub target: String,
    /// Each role's dependency closure (package names), sorted.
    pub roles: BTreeMap<String, Vec<String>>,
    pub packages: Vec<LockedPackage>,
    /// Base packages (Essential, Priority: required) at the version the
    /// source offers, each with the versions of it that packages here need
    /// (`needed_by`). A host gets one only where its own version fails a
    /// need of a package it installs: see [`drover_proto::Package::needed_by`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base: Vec<LockedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The `.deb` file's name in its source (for people; not used to find it).
    pub filename: String,
    /// blake3 of the `.deb`, hex; it is cached as `.drover/packages/<blake3>.deb`.
    pub blake3: String,
    pub size: u64,
    /// Base packages only: `perl (= 5.36.0-7+deb12u4)`, meaning perl needs
    /// this package at that version.
    #[serde(default, rename = "needed-by", skip_serializing_if = "Vec::is_empty")]
    pub needed_by: Vec<String>,
}

impl LockedPackage {
    pub fn hash(&self) -> Option<Hash> {
        Hash::from_hex(&self.blake3)
    }

    /// `needed_by`, parsed; `None` for an entry that is not `name (op version)`.
    pub fn needs(&self) -> Option<Vec<Need>> {
        self.needed_by.iter().map(|n| parse_need(n)).collect()
    }
}

/// `perl (= 5.36.0-7+deb12u4)` → perl needs (=, 5.36.0-7+deb12u4).
pub fn parse_need(text: &str) -> Option<Need> {
    let (by, rel) = text.trim().split_once(" (")?;
    let (op, version) = rel.strip_suffix(')')?.split_once(' ')?;
    Some(Need { by: by.into(), op: op.into(), version: version.trim().into() })
}

/// The inverse of [`parse_need`].
pub fn need_text(n: &Need) -> String {
    format!("{} ({} {})", n.by, n.op, n.version)
}

/// Where a locked `.deb` is cached in the project.
pub fn cache_path(project: &Path, blake3: &str) -> PathBuf {
    project.join(".drover/packages").join(format!("{blake3}.deb"))
}

/// Debian's name for the architecture Rust/uname reports.
pub fn dpkg_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" | "armv7l" => "armhf",
        "x86" | "i686" | "i386" => "i386",
        "powerpc64le" | "ppc64le" => "ppc64el",
        other => other,
    }
}

/// The lock target a host's facts select, e.g. `debian-12-amd64`; `None`
/// for facts without OS or architecture (the placeholder facts of the
/// preflight compile).
pub fn target_of(facts: &Facts) -> Option<String> {
    if facts.os_id.is_empty() || facts.arch.is_empty() {
        return None;
    }
    Some(format!("{}-{}-{}", facts.os_id, facts.os_version, dpkg_arch(&facts.arch)))
}

impl PackageLock {
    pub fn read(project: &Path) -> Result<Option<PackageLock>, SpecError> {
        let path = project.join(LOCK_FILE);
        let Some(text) = crate::read::read_text(&path, LOCK_FILE)? else { return Ok(None) };
        let lock: PackageLock = toml::from_str(&text).map_err(|e| SpecError::toml(LOCK_FILE, &text, &e))?;
        if lock.version != LOCK_VERSION {
            return Err(SpecError::file(
                &path,
                format!("lock format version {} is not {LOCK_VERSION}", lock.version),
                "run `drover packages lock` to write it again",
            ));
        }
        Ok(Some(lock))
    }

    pub fn write(&self, project: &Path) -> std::io::Result<()> {
        let body = toml::to_string(self).map_err(std::io::Error::other)?;
        let text = format!("# Written by `drover packages lock`: the exact packages hosts get. Commit it.\n{body}");
        let tmp = project.join(format!("{LOCK_FILE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, project.join(LOCK_FILE))
    }

    /// The locked packages a host with `roles` gets on `target`, checked
    /// against what the roles ask for now (`requests`: role → packages).
    pub fn packages_for(
        &self,
        project: &Path,
        roles: &[String],
        requests: &BTreeMap<String, Vec<String>>,
        target: &str,
        host: &str,
    ) -> Result<Vec<Package>, SpecError> {
        let relock = "run `drover packages lock` to resolve the roles' packages again (and review the lock's diff)";
        let asked: Vec<&String> = roles.iter().filter(|r| requests.get(*r).is_some_and(|p| !p.is_empty())).collect();
        for r in &asked {
            if self.requests.get(*r) != requests.get(*r) {
                return Err(SpecError::file(
                    &project.join(format!("roles/{r}.toml")),
                    format!("role {r}'s packages changed since packages.lock was written"),
                    relock,
                ));
            }
        }
        if asked.is_empty() {
            return Ok(vec![]);
        }
        let Some(t) = self.targets.iter().find(|t| t.target == target) else {
            let have: Vec<&str> = self.targets.iter().map(|t| t.target.as_str()).collect();
            return Err(SpecError::file(
                &project.join(LOCK_FILE),
                format!(
                    "host {host} is {target}, which packages.lock has no packages for (it has: {})",
                    have.join(", ")
                ),
                format!("run `drover packages lock --target {target}` (the package source must carry that release)"),
            ));
        };
        let names: BTreeSet<&String> = asked.iter().filter_map(|r| t.roles.get(*r)).flatten().collect();
        let bad = |p: &LockedPackage, what: &str| {
            SpecError::file(&project.join(LOCK_FILE), format!("package {}: bad {what}", p.name), relock)
        };
        let mut out = Vec::new();
        for p in t.packages.iter().filter(|p| names.contains(&p.name)) {
            let hash = p.hash().ok_or_else(|| bad(p, "blake3"))?;
            out.push(package(p, hash, vec![]));
        }
        // The base packages the host's closure needs at some version, and
        // those they in turn need: each with the needs of packages it has.
        let mut have: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        loop {
            let mut grew = false;
            for b in &t.base {
                if have.contains(&b.name) {
                    continue;
                }
                let needs: Vec<Need> = b
                    .needs()
                    .ok_or_else(|| bad(b, "needed-by"))?
                    .into_iter()
                    .filter(|n| have.contains(&n.by))
                    .collect();
                if needs.is_empty() {
                    continue;
                }
                let hash = b.hash().ok_or_else(|| bad(b, "blake3"))?;
                have.insert(b.name.clone());
                out.push(package(b, hash, needs));
                grew = true;
            }
            if !grew {
                break;
            }
        }
        // A base package added late may need more of one added earlier.
        for p in out.iter_mut().filter(|p| !p.needed_by.is_empty()) {
            if let Some(b) = t.base.iter().find(|b| b.name == p.name) {
                p.needed_by = b.needs().unwrap_or_default().into_iter().filter(|n| have.contains(&n.by)).collect();
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn package(p: &LockedPackage, hash: Hash, needed_by: Vec<Need>) -> Package {
    Package { name: p.name.clone(), version: p.version.clone(), arch: p.arch.clone(), hash, size: p.size, needed_by }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent reports Rust's/uname's machine name; the lock speaks dpkg's.
    #[test]
    fn a_hosts_machine_selects_the_dpkg_architecture_target() {
        let facts = |arch: &str| Facts {
            os_id: "debian".into(),
            os_version: "12".into(),
            arch: arch.into(),
            ..Default::default()
        };
        assert_eq!(target_of(&facts("aarch64")).as_deref(), Some("debian-12-arm64"));
        assert_eq!(target_of(&facts("x86_64")).as_deref(), Some("debian-12-amd64"));
        assert_eq!(target_of(&facts("")), None, "placeholder facts have no target");
    }
}
