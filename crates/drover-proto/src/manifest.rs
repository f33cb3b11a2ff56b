//! The desired state of one host: files, symlinks, directories and services.
//!
//! A manifest is what the controller compiles and the agent activates as one
//! generation. Entries are sorted by path and unique, so the same inputs give
//! byte-identical encodings and therefore the same [`Manifest::hash`].
//!
//! Service triggers are resolved to concrete paths by the controller: the
//! agent needs no glob engine, and "which services does this change restart"
//! is a set intersection it can compute against what is really on disk.

use serde::{Deserialize, Serialize};

use crate::Hash;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Sorted by `path`, no duplicates.
    pub entries: Vec<Entry>,
    /// Sorted by `name`, no duplicates.
    pub services: Vec<ServiceSpec>,
    /// Packages, users and groups, set up before the files swap. Boxed: most
    /// manifests have none, and a manifest travels inside enums by value.
    pub setup: Box<crate::Setup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Absolute, normalised target path (no `.`/`..` components, no trailing `/`).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (e.g. 0o644). Ignored for symlinks.
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// For templates that show `generation`: the hash of the rendering with
    /// generation 0, i.e. of everything but the number. Equal sources mean
    /// the file need not change (see `drover::deploy::desired_state`).
    pub source: Option<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File {
        size: u64,
        hash: Hash,
    },
    Symlink {
        target: String,
    },
    /// A managed directory: created with its mode and owner, kept at them,
    /// removed (when empty) once no generation wants it. Parent directories
    /// of other entries need no entry: the agent creates those as needed.
    Dir,
}

/// Longest symlink target accepted (Linux's `PATH_MAX`).
pub const MAX_LINK_TARGET: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Supervisor {
    Runit,
    Systemd,
    OpenRc,
}

impl Supervisor {
    pub fn as_str(self) -> &'static str {
        match self {
            Supervisor::Runit => "runit",
            Supervisor::Systemd => "systemd",
            Supervisor::OpenRc => "openrc",
        }
    }
}

/// The file a runit or OpenRC service drover generated logs to, and that
/// `drover logs` reads (`current`, as svlogd names it). The unit generator
/// (drover-spec) and the agent's log reader both use this one definition so
/// they cannot disagree. systemd services log to the journal instead.
pub fn service_log_file(service: &str) -> String {
    format!("/var/log/drover/{service}/current")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The supervisor's name for the service.
    pub name: String,
    pub supervisor: Supervisor,
    /// Target paths whose change restarts this service (its unit files
    /// included). Resolved by the controller from the service's globs.
    pub triggers: Vec<String>,
    /// Target paths whose change only reloads this service (`reload-on`),
    /// unless a trigger changed too. Never includes a trigger.
    pub reload_triggers: Vec<String>,
    pub health: Option<HealthCheck>,
    /// Services of this manifest (supervisor names) this one starts after
    /// when one apply starts several: the agent starts it once they have
    /// passed their health gate (or run, without one). From the service's
    /// `after` (compose's `depends_on`); empty for most. (Stored manifests
    /// changed shape with it: the agent reads the older ones too.)
    pub after: Vec<String>,
}

/// Where the agent holds back a new service that starts after others
/// (`ServiceSpec::after`): while `<HOLD_DIR>/<name>` exists, its runit
/// `run` script waits (runsvdir starts a new service directory by itself,
/// before the agent could order it). On tmpfs: gone at boot.
pub const HOLD_DIR: &str = "/run/drover/hold";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// Per attempt.
    pub timeout_ms: u64,
    /// Attempts before the service counts as unhealthy.
    pub retries: u32,
    pub interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthProbe {
    /// Run through `/bin/sh -c` on the host; healthy on exit 0.
    Command(String),
    /// Healthy when a TCP connect to 127.0.0.1:port succeeds.
    Tcp { port: u16 },
    /// Healthy on an HTTP 2xx/3xx from a plain `http://` URL.
    Http { url: String },
}

impl Manifest {
    /// The manifest's identity. Deterministic because postcard encodes
    /// sorted vectors deterministically.
    pub fn hash(&self) -> Hash {
        let bytes = postcard::to_stdvec(self).unwrap_or_default();
        Hash(*blake3::hash(&bytes).as_bytes())
    }

    /// Look an entry up by path (entries are sorted).
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).ok().map(|i| &self.entries[i])
    }

    /// Check the invariants both sides rely on. The agent calls this on every
    /// manifest it receives: a path escaping the target root is refused here,
    /// and so is an entry beneath a file or a symlink of the same manifest (a
    /// symlink in one generation plus a file beneath it would write through
    /// the link, wherever it points).
    pub fn validate(&self) -> Result<(), String> {
        for pair in self.entries.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(format!("entries not sorted or duplicated at {}", pair[1].path));
            }
        }
        for e in &self.entries {
            check_path(&e.path)?;
            if e.mode > 0o7777 {
                return Err(format!("{}: mode {:o} out of range", e.path, e.mode));
            }
            for name in [&e.owner, &e.group] {
                if name.is_empty() || name.contains([':', '/', '\n', '\0']) {
                    return Err(format!("{}: bad owner or group {name:?}", e.path));
                }
            }
            if let EntryKind::Symlink { target } = &e.kind {
                check_link_target(&e.path, target)?;
            }
        }
        if let Some((leaf, below)) = self.entry_beneath_leaf() {
            return Err(format!("{below} lies beneath {leaf}, which is not a directory in this manifest"));
        }
        for pair in self.services.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(format!("services not sorted or duplicated at {}", pair[1].name));
            }
        }
        for s in &self.services {
            check_name(&s.name)?;
        }
        self.setup.validate()
    }

    /// The first entry that has a file or symlink entry as an ancestor.
    /// Sorted order puts `/a` before `/a/b` (and `/a-b`, `/a.b` between them
    /// sort before `/a/`), so a stack of open ancestors finds it in one pass.
    fn entry_beneath_leaf(&self) -> Option<(&str, &str)> {
        let mut leaves: Vec<&str> = Vec::new();
        for e in &self.entries {
            let p = e.path.as_str();
            for leaf in &leaves {
                if p.len() > leaf.len() && p.starts_with(leaf) && p.as_bytes()[leaf.len()] == b'/' {
                    return Some((leaf, p));
                }
            }
            if !matches!(e.kind, EntryKind::Dir) {
                leaves.retain(|l| p.starts_with(l));
                leaves.push(p);
            }
        }
        None
    }
}

/// A symlink target is free text to the kernel, but not to us: it must be
/// non-empty, at most `PATH_MAX`, without NUL. It may dangle or point
/// anywhere: drover never follows links it manages.
pub fn check_link_target(path: &str, target: &str) -> Result<(), String> {
    if target.is_empty() || target.len() > MAX_LINK_TARGET || target.contains('\0') {
        return Err(format!("{path}: symlink target must be 1 to {MAX_LINK_TARGET} bytes without NUL"));
    }
    Ok(())
}

/// A service name must be one path component a supervisor accepts: 1 to 128
/// of `A-Z a-z 0-9 - _ . @`, not starting with `.`. It becomes part of host
/// paths (`/etc/sv/<name>`, `/var/log/drover/<name>/current`), so this is
/// what keeps a name like `../../etc/shadow` from naming another file. The
/// same rule as the project's (`services/<name>.toml`), checked again on the
/// host for every name that arrives from a controller.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("bad service name {name:?}: use 1 to 128 of letters, digits, - _ . @ (not starting with .)"))
    }
}

/// A target path must be absolute and normalised: no empty, `.` or `..`
/// components. This is what keeps a manifest from writing outside its root.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path == "/" {
        return Err(format!("{path:?}: target paths must be absolute file paths"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?}: NUL in path"));
    }
    for comp in path[1..].split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return Err(format!("{path:?}: path must be normalised (no empty, '.' or '..' parts)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File { size: 1, hash: Hash([1; 32]) },
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            source: None,
        }
    }

    #[test]
    fn hash_is_deterministic_and_content_sensitive() {
        let a = Manifest { entries: vec![file("/a"), file("/b")], services: vec![], setup: Default::default() };
        let b = a.clone();
        assert_eq!(a.hash(), b.hash());
        let mut c = a.clone();
        c.entries[1].mode = 0o600;
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn service_names_cannot_name_other_paths() {
        for good in ["web", "web-1", "a_b.c@2"] {
            assert!(check_name(good).is_ok(), "{good} refused");
        }
        let long = "a".repeat(129);
        for bad in ["", "..", "../../etc/shadow", "a/b", ".hidden", "a b", "a\nb", "a\0", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validate_refuses_escapes_and_disorder() {
        for bad in ["relative", "/a/../etc/shadow", "/a//b", "/a/./b", "/"] {
            let m = Manifest { entries: vec![file(bad)], services: vec![], setup: Default::default() };
            assert!(m.validate().is_err(), "{bad} accepted");
        }
        let m = Manifest { entries: vec![file("/b"), file("/a")], services: vec![], setup: Default::default() };
        assert!(m.validate().is_err());
        let m = Manifest { entries: vec![file("/a"), file("/a")], services: vec![], setup: Default::default() };
        assert!(m.validate().is_err());
        let m = Manifest { entries: vec![file("/a"), file("/b/c")], services: vec![], setup: Default::default() };
        assert!(m.validate().is_ok());
    }

    #[test]
    fn entry_lookup() {
        let m = Manifest { entries: vec![file("/a"), file("/b")], services: vec![], setup: Default::default() };
        assert!(m.entry("/b").is_some());
        assert!(m.entry("/c").is_none());
    }
}
