//! What a transition changes: every wanted path compared with the disk,
//! parent directories that must appear or may go, and what is replaced kept
//! first (in the blob store, and unmanaged files backed up).
//!
//! Planning only reads; what it keeps is a list ([`Keep`]) written by
//! [`keep`] once the free-space check passed, so a transition that cannot
//! fit is refused before it has written anything.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::fd::AsFd;

use super::{depth, Op, PARENT_DIR_MODE};
use crate::fsops;
use crate::layout::Layout;
use crate::pathstate::{Found, PathState};
use crate::safefs::{self, Root, Walker};
use crate::state::{load_statcache, StateFile};
use crate::{bail, blobs, hooks, space, Result};

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let i = path[..end].rfind('/')?;
        end = i;
        (i > 0).then(|| &path[..i])
    })
}
/// A prior file to keep before it is replaced: its content in the blob
/// store and, when it is not what the previous generation put there (an
/// unmanaged file, a hand edit), a copy in `backup/<gen>/`.
#[derive(Debug)]
pub(super) struct Keep {
    pub path: String,
    pub hash: drover_proto::Hash,
    pub backup: bool,
}

/// Write what the plan keeps (see [`Keep`]).
pub(super) fn keep(layout: &Layout, root: &Root, keeps: &[Keep], backup_gen: u64) -> Result<()> {
    for k in keeps {
        ingest(layout, root, &k.path, &k.hash)?;
        if k.backup {
            backup(layout, root, backup_gen, &k.path)?;
        }
    }
    Ok(())
}

pub(super) fn ingest(layout: &Layout, root: &Root, path: &str, hash: &drover_proto::Hash) -> Result<()> {
    let dir = root.parent_for_write(path)?;
    let mut f = safefs::open_file(dir.as_fd(), safefs::name(path))?;
    blobs::ingest(layout, &mut f, hash)
}
/// Compare wants with the disk; keep only paths that change, plus the parent
/// directories that must appear or may go, and what must be kept first.
/// Reads only.
pub(super) fn plan(
    layout: &Layout,
    root: &Root,
    state: &StateFile,
    wants: Vec<(String, PathState)>,
    managed: &HashMap<String, PathState>,
) -> Result<(Vec<Op>, Vec<Keep>)> {
    let cache = load_statcache(layout);
    let mut w = Walker::new(root);
    let want_map: HashMap<&str, &PathState> = wants.iter().map(|(p, s)| (p.as_str(), s)).collect();
    let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    let parent_dir = PathState::Dir { mode: PARENT_DIR_MODE, uid, gid };

    // Parent directories every wanted path needs, shallowest first.
    let required: BTreeSet<&str> =
        wants.iter().filter(|(_, s)| *s != PathState::Absent).flat_map(|(p, _)| ancestors(p)).collect();
    let mut shallow_first: Vec<&str> = required.iter().copied().collect();
    shallow_first.sort_by_key(|p| depth(p));
    // Managed files or symlinks that become parent directories this time.
    let mut converted: BTreeSet<&str> = BTreeSet::new();
    let mut ops = Vec::new();
    let mut keeps = Vec::new();
    for d in &shallow_first {
        if want_map.get(d).is_some_and(|s| matches!(s, PathState::Dir { .. })) {
            continue; // an explicit directory entry: planned below
        }
        let freed = want_map.get(d) == Some(&&PathState::Absent);
        let prior = match w.look(d)? {
            Found::Dir { .. } => continue,
            Found::Absent => PathState::Absent,
            Found::BeneathSymlink { at } if converted.contains(at.as_str()) => PathState::Absent,
            Found::BeneathSymlink { at } => {
                bail!("refusing to create {d}: {at} is a symlink drover does not manage, and drover never writes through symlinks")
            }
            Found::File { .. } | Found::Symlink { .. } if freed => {
                converted.insert(d);
                w.read_state(d, cache.get(*d).copied())?.0
            }
            Found::File { .. } => bail!("refusing to replace {d}: it is a file drover does not manage, and a managed path needs it to be a directory"),
            Found::Symlink { .. } => bail!("refusing to replace {d}: it is a symlink drover does not manage, and a managed path needs it to be a directory"),
            Found::Special => bail!("refusing to replace {d}: it is a special file, and a managed path needs it to be a directory"),
        };
        if let PathState::File { content: hash, .. } = &prior {
            keeps.push(Keep { path: d.to_string(), hash: *hash, backup: false });
        }
        ops.push(Op { path: d.to_string(), want: parent_dir.clone(), prior, implicit: true });
    }

    let mut removed: BTreeSet<String> = BTreeSet::new();
    for (path, want) in &wants {
        if converted.contains(path.as_str()) {
            continue;
        }
        // Still a parent of wanted paths: a dropped directory entry stays.
        if *want == PathState::Absent && required.contains(&path.as_str()) {
            continue;
        }
        let (prior, _) = w.read_state(path, cache.get(path).copied())?;
        if &prior == want {
            continue;
        }
        match (&prior, want) {
            (PathState::Special | PathState::BeneathSymlink { .. }, PathState::Absent) => continue,
            (PathState::BeneathSymlink { at }, _) => {
                if !converted.contains(at.as_str()) {
                    bail!("refusing to write {path}: it lies beneath the symlink {at}, which drover does not manage; drover never writes through symlinks");
                }
                ops.push(Op { path: path.clone(), want: want.clone(), prior: PathState::Absent, implicit: false });
                continue;
            }
            (PathState::Special, _) => bail!("{path}: refusing to replace a special file with a managed entry"),
            (PathState::Dir { .. }, PathState::Dir { .. }) => {}
            // Only an empty directory (once this transition's removals are
            // done) may give way: nothing unmanaged is ever deleted.
            (PathState::Dir { .. }, _) if !empties(&mut w, path, &wants, &state.dirs)? => {
                if *want == PathState::Absent {
                    continue; // a dropped directory that holds other files stays
                }
                bail!("refusing to replace the directory {path}: it holds files drover does not manage");
            }
            (PathState::File { content: hash, .. }, _) => {
                keeps.push(Keep { path: path.clone(), hash: *hash, backup: managed.get(path) != Some(&prior) });
            }
            _ => {}
        }
        if *want == PathState::Absent {
            removed.insert(path.clone());
        }
        // A directory drover created giving way: its record goes (and comes
        // back if this is undone).
        let implicit = matches!(prior, PathState::Dir { .. }) && state.dirs.contains(path);
        ops.push(Op { path: path.clone(), want: want.clone(), prior, implicit });
    }

    // Directories drover created that nothing needs now, deepest first,
    // when nothing else is left in them.
    let mut stale: Vec<&String> =
        state.dirs.iter().filter(|d| !required.contains(&d.as_str()) && !want_map.contains_key(d.as_str())).collect();
    stale.sort_by_key(|d| std::cmp::Reverse(depth(d)));
    for d in stale {
        let Found::Dir { mode, uid, gid } = w.look(d)? else { continue };
        let children = safefs::list(dir_of(root, d)?.as_fd(), safefs::name(d))?;
        if children.iter().all(|c| removed.contains(&format!("{d}/{c}"))) {
            removed.insert(d.clone());
            ops.push(Op {
                path: d.clone(),
                want: PathState::Absent,
                prior: PathState::Dir { mode, uid, gid },
                implicit: true,
            });
        }
    }
    Ok((ops, keeps))
}

fn dir_of(root: &Root, path: &str) -> Result<std::os::fd::OwnedFd> {
    match root.parent(path, false)? {
        safefs::Parent::Dir(fd) => Ok(fd),
        _ => bail!("{path}: parent is not a directory"),
    }
}

/// Will directory `path` be empty once the wanted removals are done? Only
/// directories drover created itself (`ours`) may go with it.
fn empties(w: &mut Walker<'_>, path: &str, wants: &[(String, PathState)], ours: &BTreeSet<String>) -> Result<bool> {
    let removing: BTreeSet<&str> =
        wants.iter().filter(|(_, s)| *s == PathState::Absent).map(|(p, _)| p.as_str()).collect();
    let mut stack = vec![path.to_string()];
    while let Some(d) = stack.pop() {
        let fd = dir_of(w.root(), &d)?;
        for c in safefs::list(fd.as_fd(), safefs::name(&d))? {
            let child = format!("{d}/{c}");
            match w.look(&child)? {
                Found::Dir { .. } if ours.contains(&child) => stack.push(child),
                _ if removing.contains(child.as_str()) => {}
                _ => return Ok(false),
            }
        }
    }
    Ok(true)
}

fn backup(layout: &Layout, root: &Root, generation: u64, path: &str) -> Result<()> {
    let dst = layout.backup(generation, path);
    fsops::private_dir(dst.parent().unwrap_or(layout.state_dir()))?;
    let dir = root.parent_for_write(path)?;
    let mut src = safefs::open_file(dir.as_fd(), safefs::name(path))?;
    let copied = hooks::fault("backup").and_then(|()| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&dst)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()
    });
    copied.map_err(|e| {
        // No half copy left taking the space the next attempt needs.
        let _ = fs::remove_file(&dst);
        space::write_error(e, &format!("back up {path} to"), &dst.display().to_string(), || space::of_path(&dst))
    })
}
