//! Doing a transition's ops in an order that works whatever kinds the paths
//! change between (removals deepest first, directories shallowest first,
//! files and symlinks staged beside their targets, then swapped in by
//! rename), with every touched directory synced.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd};

use drover_proto::StorageError;

use super::{depth, Op};
use crate::layout::Layout;
use crate::pathstate::{Found, PathState};
use crate::safefs::{self, Root};
use crate::{bail, hooks, Context, Result};

/// Temporary name beside the target. Fixed length (a hash of the path) so a
/// long file name cannot push it past NAME_MAX; `role` keeps forward and
/// restore temporaries apart.
pub(super) fn tmp_name(path: &str, role: &str) -> std::ffi::OsString {
    let tag = &blake3::hash(path.as_bytes()).to_hex()[..16];
    format!(".drover-{role}-{tag}").into()
}
/// Make every op's path what `target(op)` says, in an order that works for
/// any change of kind. `forward` marks the hook points of a forward run.
pub(super) fn execute(
    layout: &Layout,
    root: &Root,
    ops: &[Op],
    target: impl Fn(&Op) -> &PathState,
    forward: bool,
) -> Result<()> {
    let mut removals = Vec::new();
    let mut mkdirs = Vec::new();
    let mut places = Vec::new();
    for op in ops {
        let want = target(op);
        let now = root.look(&op.path)?;
        let same_kind = matches!(
            (&now, want),
            (Found::Dir { .. }, PathState::Dir { .. })
                | (
                    Found::File { .. } | Found::Symlink { .. } | Found::Absent,
                    PathState::File { .. } | PathState::Symlink { .. }
                )
        );
        match (&now, want) {
            (Found::Absent | Found::BeneathSymlink { .. }, PathState::Absent) => continue,
            (Found::Special, _) => bail!("{}: refusing to touch a special file", op.path),
            (_, PathState::Absent) => removals.push((op, now)),
            (_, PathState::Dir { .. }) => {
                if !same_kind && now != Found::Absent && !matches!(now, Found::BeneathSymlink { .. }) {
                    removals.push((op, now));
                }
                mkdirs.push(op);
            }
            (_, PathState::File { .. } | PathState::Symlink { .. }) => {
                if !same_kind && !matches!(now, Found::BeneathSymlink { .. }) {
                    removals.push((op, now));
                }
                places.push(op);
            }
            (_, PathState::Special | PathState::BeneathSymlink { .. }) => {}
        }
    }
    removals.sort_by_key(|(o, _)| std::cmp::Reverse(depth(&o.path)));
    for (op, now) in &removals {
        let dir = root.parent_for_write(&op.path)?;
        match (now, target(op)) {
            // A directory that is only to go away stays if something appeared
            // in it meanwhile; one that must give way to a file may not.
            (Found::Dir { .. }, PathState::Absent) => {
                safefs::remove_dir_if_empty(dir.as_fd(), safefs::name(&op.path))?;
            }
            (Found::Dir { .. }, _) => safefs::remove_dir(dir.as_fd(), safefs::name(&op.path))?,
            _ => safefs::remove_file(dir.as_fd(), safefs::name(&op.path))?,
        }
    }
    mkdirs.sort_by_key(|o| depth(&o.path));
    for op in &mkdirs {
        if let PathState::Dir { mode, uid, gid } = target(op) {
            let dir = root.parent_for_write(&op.path)?;
            safefs::create_dir(dir.as_fd(), safefs::name(&op.path), *mode, *uid, *gid)?;
        }
    }
    let role = if forward { "new" } else { "old" };
    // Going back, a path already as wanted is left alone: only what the
    // attempt changed is rewritten (a full disk has no room for a second
    // copy of an intact file, and needs none). Going forward, the plan has
    // just compared every path with the disk.
    let mut staged = Vec::with_capacity(places.len());
    for op in places {
        let dir = root.parent_for_write(&op.path)?;
        if !forward && intact(layout, dir.as_fd(), &op.path, target(op))? {
            continue;
        }
        let made = stage(layout, dir.as_fd(), op, target(op), role);
        match made {
            // Going back with no room for the prior content beside what
            // replaced it: what replaced it is in the blob store, so it
            // goes first.
            Err(e) if !forward && e.storage().is_some_and(|f| f.error == StorageError::NoSpace) => {
                safefs::remove_file(dir.as_fd(), safefs::name(&op.path))?;
                stage(layout, dir.as_fd(), op, target(op), role)?;
            }
            made => made?,
        }
        staged.push(op);
    }
    if forward {
        hooks::point(layout, "after-stage");
    }
    let half = staged.len() / 2;
    let mut parents = BTreeSet::new();
    for (i, op) in staged.iter().enumerate() {
        if forward && i == half {
            hooks::point(layout, "mid-swap");
        }
        let dir = root.parent_for_write(&op.path)?;
        safefs::rename(dir.as_fd(), &tmp_name(&op.path, role), safefs::name(&op.path))
            .map_err(|e| e.writing(&op.path))?;
        parents.insert(parent_of(&op.path));
    }
    for (op, _) in &removals {
        parents.insert(parent_of(&op.path));
    }
    for op in &mkdirs {
        parents.insert(parent_of(&op.path));
    }
    for p in parents {
        if let Ok(safefs::Parent::Dir(fd)) = root.dir(&p, false) {
            safefs::sync(fd.as_fd())?;
        }
    }
    Ok(())
}

/// Stage `want` at its temporary name beside `op.path`.
fn stage(layout: &Layout, dir: BorrowedFd<'_>, op: &Op, want: &PathState, role: &str) -> Result<()> {
    let tmp = tmp_name(&op.path, role);
    match want {
        PathState::File { content: hash, mode, uid, gid } => {
            let mut src = fs::File::open(layout.blob(hash))
                .ctx(|| format!("{}: content {} was not received; apply again", op.path, hash.short()))?;
            safefs::create_file(dir, &tmp, &mut src, *mode, *uid, *gid).map_err(|e| e.writing(&op.path))
        }
        PathState::Symlink { target } => safefs::create_symlink(dir, &tmp, target).map_err(|e| e.writing(&op.path)),
        _ => Ok(()),
    }
}

/// Is `path` already exactly `want` (kind, owner, mode and content)? Only
/// a file whose size and attributes match is hashed.
fn intact(layout: &Layout, dir: BorrowedFd<'_>, path: &str, want: &PathState) -> Result<bool> {
    let name = safefs::name(path);
    Ok(match (safefs::look(dir, name)?, want) {
        (Found::Symlink { target: now }, PathState::Symlink { target }) => now == *target,
        (Found::File { content: id, mode: m, uid: u, gid: g }, PathState::File { content, mode, uid, gid }) => {
            let size = fs::metadata(layout.blob(content)).map(|md| md.len()).ok();
            (m, u, g) == (*mode, *uid, *gid) && size == Some(id.size) && safefs::hash_at(dir, name)? == *content
        }
        _ => false,
    })
}

fn parent_of(path: &str) -> String {
    path[..path.rfind('/').unwrap_or(0)].to_string()
}
