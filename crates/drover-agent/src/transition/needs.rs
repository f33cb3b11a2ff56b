//! What a transition needs on each filesystem before it writes anything
//! (see [`crate::space`]): every new file, directory and symlink where it
//! will be staged (beside its target, while the old one still stands), the
//! copies of replaced files it keeps for rollback in the state directory,
//! and the journal. Free space is read once per directory.

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsFd;

use super::plan::Keep;
use super::Op;
use crate::blobs;
use crate::layout::Layout;
use crate::pathstate::{Found, PathState};
use crate::safefs::{Parent, Root};
use crate::space::{self, Fs, Needs};

/// Bytes of journal (and, once committed, of undo record) per op, at most.
const JOURNAL_PER_OP: u64 = 1024;

pub(super) fn needs(layout: &Layout, root: &Root, ops: &[Op], keeps: &[Keep]) -> Needs {
    let mut needs = Needs::default();
    let mut dirs: HashMap<String, Fs> = HashMap::new();
    for op in ops {
        let size = match &op.want {
            PathState::File { content, .. } => fs::metadata(layout.blob(content)).map_or(0, |m| m.len()),
            PathState::Dir { .. } | PathState::Symlink { .. } => 1,
            _ => continue,
        };
        needs.file(&fs_of(root, &mut dirs, &op.path), size);
    }
    let state_fs = space::of_path(layout.state_dir());
    for k in keeps {
        let size = match root.look(&k.path) {
            Ok(Found::File { content: id, .. }) => id.size,
            _ => 0,
        };
        if !blobs::has(layout, &k.hash) {
            needs.file(&state_fs, size);
        }
        if k.backup {
            needs.file(&state_fs, size);
        }
    }
    needs.add(&state_fs, ops.len() as u64 * JOURNAL_PER_OP);
    needs
}

/// The filesystem `path` will be written on: that of its nearest existing
/// ancestor directory (reached without following symlinks).
fn fs_of(root: &Root, dirs: &mut HashMap<String, Fs>, path: &str) -> Fs {
    let mut dir = parent(path);
    loop {
        if let Some(fs) = dirs.get(dir) {
            return fs.clone();
        }
        if let Ok(Parent::Dir(fd)) = root.dir(dir, false) {
            let fs = space::of_fd(fd.as_fd());
            dirs.insert(dir.to_string(), fs.clone());
            return fs;
        }
        if dir.is_empty() {
            return space::of_path(root.path());
        }
        dir = parent(dir);
    }
}

fn parent(path: &str) -> &str {
    &path[..path.rfind('/').unwrap_or(0)]
}
