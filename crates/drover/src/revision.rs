//! The project revision: what a run or a rollout was made from.
//!
//! A revision has two parts:
//!
//! - `inputs`: a blake3 hash of every file of the project directory (path,
//!   mode bits, content; a symlink by its target text, never followed), except
//!   `.drover/` (the state store) and `.git/`. This is exactly what `compile`
//!   reads, so equal `inputs` means every host compiles to the same manifest.
//! - `git`: the commit (`-dirty` with local changes) when the project is in a
//!   git work tree. For people: it says *which* change it was.
//!
//! Two revisions are "the same project" when their `inputs` are equal: a
//! commit of already-present changes, or a rebase that lands on the same
//! files, changes `git` but not what would be deployed.
//!
//! Stored as text, `inputs:<12 hex>` or `inputs:<12 hex> git:<commit>`.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub inputs: String,
    pub git: Option<String>,
}

impl Revision {
    /// The revision of the project in `dir` now.
    pub fn of(dir: &Path) -> Revision {
        let mut h = blake3::Hasher::new();
        hash_tree(dir, dir, &mut h);
        Revision { inputs: h.finalize().to_hex()[..12].to_string(), git: git_commit(dir) }
    }

    /// A stored revision (see [`fmt::Display`]); unknown words are ignored.
    pub fn parse(s: &str) -> Revision {
        let mut r = Revision { inputs: String::new(), git: None };
        for word in s.split_whitespace() {
            if let Some(v) = word.strip_prefix("inputs:") {
                r.inputs = v.to_string();
            } else if let Some(v) = word.strip_prefix("git:") {
                r.git = Some(v.to_string());
            }
        }
        r
    }

    /// Would both compile to the same thing?
    pub fn same_inputs(&self, other: &Revision) -> bool {
        !self.inputs.is_empty() && self.inputs == other.inputs
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inputs:{}", self.inputs)?;
        if let Some(g) = &self.git {
            write!(f, " git:{g}")?;
        }
        Ok(())
    }
}

/// The commit of the git work tree holding `dir`, `-dirty` when the project
/// part of it has local changes; `None` outside git (or without git).
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

/// Every entry under `dir` in name order. Symlinks are hashed by their target
/// text and never followed: a layer may hold a link to `/` or to itself.
fn hash_tree(root: &Path, dir: &Path, h: &mut blake3::Hasher) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if dir == root && (name == ".drover" || name == ".git") {
            continue;
        }
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
        if md.is_dir() {
            hash_tree(root, &p, h);
            continue;
        }
        h.update(rel.as_bytes());
        h.update(&[0]);
        h.update(&md.permissions().mode().to_le_bytes());
        if md.file_type().is_symlink() {
            h.update(b"->");
            h.update(std::fs::read_link(&p).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
        } else if let Ok(bytes) = std::fs::read(&p) {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_change_with_content_mode_and_link_target_but_not_with_state() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("drover.toml"), "x").unwrap();
        std::os::unix::fs::symlink("/", p.join("root-link")).unwrap();
        let a = Revision::of(p);
        assert_eq!(a.inputs.len(), 12);
        std::fs::create_dir_all(p.join(".drover")).unwrap();
        std::fs::write(p.join(".drover/state.db"), "y").unwrap();
        assert!(Revision::of(p).same_inputs(&a), "the state store is not an input");
        std::fs::set_permissions(p.join("drover.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let b = Revision::of(p);
        assert!(!b.same_inputs(&a), "mode is an input");
        std::fs::remove_file(p.join("root-link")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("root-link")).unwrap();
        assert!(!Revision::of(p).same_inputs(&b), "a link target is an input");
    }

    #[test]
    fn stored_text_round_trips() {
        let r = Revision { inputs: "0123456789ab".into(), git: Some("cafe-dirty".into()) };
        assert_eq!(r.to_string(), "inputs:0123456789ab git:cafe-dirty");
        assert_eq!(Revision::parse(&r.to_string()), r);
        assert!(!Revision::parse("").same_inputs(&Revision::parse("")), "unknown is never the same");
    }
}
