//! One read-only pass over many managed paths (a drift check, a diff, a
//! transition's plan): each parent directory is walked to once, and a
//! file's hash comes from the stat cache when its stat identity is the one
//! hashed before.

use std::collections::HashMap;
use std::os::fd::AsFd;

use drover_proto::Hash;

use super::{hash_at, look_in, name, split, Parent, Root};
use crate::pathstate::{Found, PathState, StatId};
use crate::{bail, Result};

/// Parent directories opened during one read-only pass (drift check, diff),
/// so a tree of 20,000 files walks each directory once, not once per file.
pub struct Walker<'r> {
    root: &'r Root,
    dirs: HashMap<String, Parent>,
}

impl<'r> Walker<'r> {
    pub fn new(root: &'r Root) -> Walker<'r> {
        Walker { root, dirs: HashMap::new() }
    }

    pub fn root(&self) -> &'r Root {
        self.root
    }

    /// The (cached) walk to `path`'s parent.
    fn parent(&mut self, path: &str) -> Result<&Parent> {
        let key = split(path).0.join("/");
        if !self.dirs.contains_key(&key) {
            let p = self.root.parent(path, false)?;
            self.dirs.insert(key.clone(), p);
        }
        Ok(&self.dirs[&key])
    }

    /// What is at `path` now.
    pub fn look(&mut self, path: &str) -> Result<Found> {
        look_in(self.parent(path)?, path)
    }

    /// Hash the file at `path` (which [`Walker::look`] found to be a file).
    pub fn hash(&mut self, path: &str) -> Result<Hash> {
        match self.parent(path)? {
            Parent::Dir(fd) => hash_at(fd.as_fd(), name(path)),
            _ => bail!("{path}: not a file"),
        }
    }

    /// Read what is at managed `path`, using `cached` (a previously computed
    /// hash for a stat identity) to avoid re-hashing unchanged files.
    pub fn read_state(&mut self, path: &str, cached: Option<(StatId, Hash)>) -> Result<(PathState, Option<StatId>)> {
        Ok(match self.look(path)? {
            Found::File { content: id, mode, uid, gid } => {
                let hash = match cached {
                    Some((cid, h)) if cid == id => h,
                    _ => self.hash(path)?,
                };
                (PathState::File { content: hash, mode, uid, gid }, Some(id))
            }
            Found::Absent => (PathState::Absent, None),
            Found::Symlink { target } => (PathState::Symlink { target }, None),
            Found::Dir { mode, uid, gid } => (PathState::Dir { mode, uid, gid }, None),
            Found::Special => (PathState::Special, None),
            Found::BeneathSymlink { at } => (PathState::BeneathSymlink { at }, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn read_state_sees_files_links_dirs_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut w = Walker::new(&root);
        fs::write(dir.path().join("f"), b"hello").unwrap();
        let (st, id) = w.read_state("/f", None).unwrap();
        match st {
            PathState::File { content: hash, .. } => assert_eq!(hash.0, *blake3::hash(b"hello").as_bytes()),
            other => panic!("{other:?}"),
        }
        // A stale cache entry is ignored: identity differs after a rewrite.
        fs::write(dir.path().join("f"), b"hello, world").unwrap();
        let (st2, _) = w.read_state("/f", Some((id.unwrap(), Hash([0; 32])))).unwrap();
        let PathState::File { content: hash, .. } = st2 else { panic!("{st2:?}") };
        assert_eq!(hash.0, *blake3::hash(b"hello, world").as_bytes());
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        assert_eq!(w.read_state("/l", None).unwrap().0, PathState::Symlink { target: "f".into() });
        assert_eq!(w.read_state("/nope", None).unwrap().0, PathState::Absent);
        fs::create_dir(dir.path().join("d")).unwrap();
        assert!(matches!(w.read_state("/d", None).unwrap().0, PathState::Dir { .. }));
        // Beneath a symlink to a directory: not looked through.
        std::os::unix::fs::symlink("d", dir.path().join("ld")).unwrap();
        fs::write(dir.path().join("d/x"), b"x").unwrap();
        let mut w = Walker::new(&root);
        assert_eq!(w.read_state("/ld/x", None).unwrap().0, PathState::BeneathSymlink { at: "/ld".into() });
    }
}
