//! What a host needs besides files: Debian packages, users and groups.
//!
//! The controller resolves everything (package closures, versions, content
//! hashes) so the agent only compares with what is installed and acts: it
//! never talks to a package mirror and never resolves a dependency.

use serde::{Deserialize, Serialize};

use crate::Hash;

/// Sorted lists, so equal setups encode identically (see [`crate::Manifest::hash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Setup {
    /// The locked dependency closure of the host's roles' packages, sorted
    /// by name. Each `.deb` travels as an ordinary blob (`hash`).
    pub packages: Vec<Package>,
    /// Package names to remove (`dpkg --remove`) when installed, sorted.
    pub packages_absent: Vec<String>,
    /// Created (when missing) before users and files, sorted by name.
    pub groups: Vec<GroupSpec>,
    /// Created (when missing) before files that name them, sorted by name.
    pub users: Vec<UserSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// blake3 of the `.deb` file.
    pub hash: Hash,
    pub size: u64,
    /// Empty for a package of a role's closure: installed when the host
    /// lacks it or has an older version. Not empty for a *base* package
    /// (Essential, Priority: required: every Debian host has one): the
    /// versions the closure's packages need of it, installed only when the
    /// host's own version fails one that a package being installed sets.
    /// The host decides, from its own dpkg status, so one manifest serves
    /// every host of a target whether its base is behind the lock or not.
    pub needed_by: Vec<Need>,
}

/// "`by` needs this package at (`op` `version`)", e.g. perl needs
/// perl-base (= 5.36.0-7+deb12u4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    pub by: String,
    /// A Debian relation: `=`, `>=`, `<<`, `<=`, `>>`.
    pub op: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub name: String,
    pub gid: Option<u32>,
    pub system: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    pub name: String,
    pub uid: Option<u32>,
    /// Primary group (created by drover if declared, else must exist);
    /// `None`: a group named like the user (useradd's default).
    pub group: Option<String>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub system: bool,
}

impl Setup {
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.packages_absent.is_empty() && self.groups.is_empty() && self.users.is_empty()
    }

    /// Names are passed to `dpkg`, `useradd` and `groupadd` as arguments:
    /// refuse anything that could read as an option or hold odd bytes.
    pub fn validate(&self) -> Result<(), String> {
        let names = self
            .packages
            .iter()
            .map(|p| &p.name)
            .chain(&self.packages_absent)
            .chain(self.groups.iter().map(|g| &g.name))
            .chain(self.users.iter().map(|u| &u.name))
            .chain(self.users.iter().flat_map(|u| u.group.iter().chain(&u.groups)));
        for n in names {
            check_word(n)?;
        }
        for p in &self.packages {
            check_word(&p.version)?;
            check_word(&p.arch)?;
        }
        for u in &self.users {
            for v in u.home.iter().chain(&u.shell) {
                if !v.starts_with('/') || v.contains(['\n', '\0', ':']) {
                    return Err(format!("user {}: home and shell must be absolute paths, got {v:?}", u.name));
                }
            }
        }
        Ok(())
    }
}

/// A package, user, group, version or architecture name: 1 to 128 of
/// letters, digits and `.+-_:~@`, not starting with `-`.
pub fn check_word(s: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&s.len())
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || ".+-_:~@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("bad name {s:?}: use letters, digits and . + - _ : ~ @ (not starting with -)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_like_and_odd_names_are_refused() {
        for bad in ["", "-rf", "a b", "a/b", "a\n", "x;y"] {
            assert!(check_word(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["nginx", "libc6", "1:2.2.7-1", "amd64", "www-data", "g++"] {
            assert!(check_word(good).is_ok(), "{good:?} refused");
        }
    }
}
