//! Journaled transitions: move a set of paths from what they are to what they
//! should be, such that after any crash the host can be put back on exactly
//! one side.
//!
//! 1. Plan: read every path's prior state (through [`crate::safefs`]: no
//!    symlink is followed). Prior content that is not in the blob store
//!    (unmanaged files, hand edits) is stored there, and unmanaged files are
//!    also copied to `backup/<gen>/<path>`: nothing drover replaces is lost.
//!    Parent directories that must appear become ops of their own (created
//!    0755, remembered in `state.dirs`); directories drover created that no
//!    generation needs any more, once empty, become removals.
//! 2. Write `journal.json` (ops with priors, `seq`).
//! 3. Execute, in an order that works whatever kinds the paths change
//!    between (file → symlink → directory → file): removals deepest first,
//!    directories shallowest first, then every new file and symlink staged to
//!    a temporary name beside its target (fsynced), then swapped in by rename.
//! 4. Commit: `state.json` with `seq` bumped — the single atomic commit point.
//! 5. The journal is renamed to `undo.json`: the record of how to go back.
//!
//! Going back (an uncommitted journal at recovery, or [`undo`] of a
//! committed one) executes the same way with the priors as the wants, so it
//! is idempotent: a crash during recovery just recovers again.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

use crate::fsops::{self, PathState};
use crate::layout::Layout;
use crate::safefs::{self, Found, Root, Walker};
use crate::state::{load_statcache, read_json, write_json, StateFile};
use crate::{bail, blobs, hooks, Context, Result};

/// Mode of the parent directories drover creates.
pub const PARENT_DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub path: String,
    pub want: PathState,
    pub prior: PathState,
    /// A parent directory drover creates or removes on its own account (no
    /// manifest entry names it).
    #[serde(default)]
    pub implicit: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub seq: u64,
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// In planning order; execution orders them by kind and depth.
    pub ops: Vec<Op>,
}

/// What a transition did.
#[derive(Debug, Default)]
pub struct Done {
    pub ops: Vec<Op>,
}

/// Move the host from generation `from` to `to` by making each path in
/// `wants` what it says. `managed` is what `from` says each path should be:
/// prior content that differs from it is backed up before being replaced.
pub fn run(
    layout: &Layout,
    state: &mut StateFile,
    from: Option<u64>,
    to: Option<u64>,
    wants: Vec<(String, PathState)>,
    managed: &HashMap<String, PathState>,
) -> Result<Done> {
    let root = Root::open(layout.root())?;
    let ops = plan(layout, &root, state, wants, managed, to.unwrap_or(0))?;
    commit(layout, &root, state, from, to, ops)
}

/// Undo a committed transition `j`: every path back to its prior state, as
/// a transition of its own (journaled, so a crash during the undo is safe).
pub fn undo(layout: &Layout, state: &mut StateFile, j: &Journal) -> Result<Done> {
    let root = Root::open(layout.root())?;
    let mut w = Walker::new(&root);
    let cache = load_statcache(layout);
    let mut ops = Vec::new();
    for op in j.ops.iter().rev() {
        let (now, _) = fsops::read_state(&mut w, &op.path, cache.get(&op.path).copied())?;
        if let PathState::File { hash, .. } = &now {
            if !blobs::has(layout, hash) {
                ingest(layout, &root, &op.path, hash)?;
            }
        }
        ops.push(Op { path: op.path.clone(), want: op.prior.clone(), prior: now, implicit: op.implicit });
    }
    commit(layout, &root, state, j.to, j.from, ops)
}

fn commit(
    layout: &Layout,
    root: &Root,
    state: &mut StateFile,
    from: Option<u64>,
    to: Option<u64>,
    ops: Vec<Op>,
) -> Result<Done> {
    let seq = state.seq + 1;
    let journal = Journal { seq, from, to, ops };
    write_json(&layout.journal(), &journal)?;
    if let Err(e) = execute(layout, root, &journal.ops, |o| &o.want, true) {
        // Not committed: put everything back as it was, then report.
        restore(layout, root, &journal)?;
        return Err(e);
    }
    let mut next = state.clone();
    next.seq = seq;
    next.current = to;
    for op in journal.ops.iter().filter(|o| o.implicit) {
        if matches!(op.want, PathState::Dir { .. }) {
            next.dirs.insert(op.path.clone());
        } else {
            next.dirs.remove(&op.path);
        }
    }
    next.save(layout)?;
    *state = next;
    hooks::point(layout, "after-commit");
    finish(layout)?;
    Ok(Done { ops: journal.ops })
}

fn depth(p: &str) -> usize {
    p.matches('/').count()
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let i = path[..end].rfind('/')?;
        end = i;
        (i > 0).then(|| &path[..i])
    })
}

fn ingest(layout: &Layout, root: &Root, path: &str, hash: &drover_proto::Hash) -> Result<()> {
    let dir = root.parent_for_write(path)?;
    let mut f = safefs::open_file(dir.as_fd(), safefs::name(path))?;
    blobs::ingest(layout, &mut f, hash)
}

/// Compare wants with the disk; keep only paths that change, plus the parent
/// directories that must appear or may go.
fn plan(
    layout: &Layout,
    root: &Root,
    state: &StateFile,
    wants: Vec<(String, PathState)>,
    managed: &HashMap<String, PathState>,
    backup_gen: u64,
) -> Result<Vec<Op>> {
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
                fsops::read_state(&mut w, d, cache.get(*d).copied())?.0
            }
            Found::File { .. } => bail!("refusing to replace {d}: it is a file drover does not manage, and a managed path needs it to be a directory"),
            Found::Symlink { .. } => bail!("refusing to replace {d}: it is a symlink drover does not manage, and a managed path needs it to be a directory"),
            Found::Special => bail!("refusing to replace {d}: it is a special file, and a managed path needs it to be a directory"),
        };
        if let PathState::File { hash, .. } = &prior {
            ingest(layout, root, d, hash)?;
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
        let (prior, _) = fsops::read_state(&mut w, path, cache.get(path).copied())?;
        if &prior == want {
            continue;
        }
        match (&prior, want) {
            (PathState::Other { .. }, PathState::Absent) => continue,
            (PathState::Other { what }, _) if what.starts_with("beneath the symlink ") => {
                let at = &what["beneath the symlink ".len()..];
                if !converted.contains(at) {
                    bail!("refusing to write {path}: it lies {what}, which drover does not manage; drover never writes through symlinks");
                }
                ops.push(Op { path: path.clone(), want: want.clone(), prior: PathState::Absent, implicit: false });
                continue;
            }
            (PathState::Other { what }, _) => bail!("{path}: refusing to replace {what} with a managed entry"),
            (PathState::Dir { .. }, PathState::Dir { .. }) => {}
            // Only an empty directory (once this transition's removals are
            // done) may give way: nothing unmanaged is ever deleted.
            (PathState::Dir { .. }, _) if !empties(&mut w, path, &wants, &state.dirs)? => {
                if *want == PathState::Absent {
                    continue; // a dropped directory that holds other files stays
                }
                bail!("refusing to replace the directory {path}: it holds files drover does not manage");
            }
            (PathState::File { hash, .. }, _) => {
                ingest(layout, root, path, hash)?;
                if managed.get(path) != Some(&prior) {
                    backup(layout, root, backup_gen, path)?;
                }
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
    Ok(ops)
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
    let mut out = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&dst)
    }
    .ctx(|| format!("create {}", dst.display()))?;
    std::io::copy(&mut src, &mut out).ctx(|| format!("back up {path}"))?;
    Ok(())
}

/// Temporary name beside the target. Fixed length (a hash of the path) so a
/// long file name cannot push it past NAME_MAX; `role` keeps forward and
/// restore temporaries apart.
fn tmp_name(path: &str, role: &str) -> std::ffi::OsString {
    let tag = &blake3::hash(path.as_bytes()).to_hex()[..16];
    format!(".drover-{role}-{tag}").into()
}

/// Make every op's path what `target(op)` says, in an order that works for
/// any change of kind. `forward` marks the hook points of a forward run.
fn execute(layout: &Layout, root: &Root, ops: &[Op], target: impl Fn(&Op) -> &PathState, forward: bool) -> Result<()> {
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
            (_, PathState::Other { .. }) => {}
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
    for op in &places {
        let dir = root.parent_for_write(&op.path)?;
        let tmp = tmp_name(&op.path, role);
        match target(op) {
            PathState::File { hash, mode, uid, gid } => {
                let mut src = fs::File::open(layout.blob(hash))
                    .ctx(|| format!("{}: content {} was not received; apply again", op.path, hash.short()))?;
                safefs::create_file(dir.as_fd(), &tmp, &mut src, *mode, *uid, *gid)?;
            }
            PathState::Symlink { target } => safefs::create_symlink(dir.as_fd(), &tmp, target)?,
            _ => {}
        }
    }
    if forward {
        hooks::point(layout, "after-stage");
    }
    let half = places.len() / 2;
    let mut parents = BTreeSet::new();
    for (i, op) in places.iter().enumerate() {
        if forward && i == half {
            hooks::point(layout, "mid-swap");
        }
        let dir = root.parent_for_write(&op.path)?;
        safefs::rename(dir.as_fd(), &tmp_name(&op.path, role), safefs::name(&op.path))?;
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

fn parent_of(path: &str) -> String {
    path[..path.rfind('/').unwrap_or(0)].to_string()
}

/// Undo an uncommitted journal: every path back to its prior state. Safe to
/// run any number of times (a crash during recovery just recovers again).
fn restore(layout: &Layout, root: &Root, j: &Journal) -> Result<()> {
    for op in &j.ops {
        if let Ok(safefs::Parent::Dir(fd)) = root.parent(&op.path, false) {
            let _ = safefs::remove_file(fd.as_fd(), &tmp_name(&op.path, "new"));
            let _ = safefs::remove_file(fd.as_fd(), &tmp_name(&op.path, "old"));
        }
    }
    execute(layout, root, &j.ops, |o| &o.prior, false)?;
    fs::remove_file(layout.journal()).ctx(|| "remove journal".into())
}

/// Committed: the journal becomes the undo record.
fn finish(layout: &Layout) -> Result<()> {
    fs::rename(layout.journal(), layout.undo()).ctx(|| "retire journal".into())?;
    fsops::sync_dir(layout.state_dir())
}

/// Bring the host back to one whole generation after a crash. Returns a
/// description of what was done, if anything.
pub fn recover(layout: &Layout, state: &StateFile) -> Result<Option<String>> {
    let Some(j) = read_json::<Journal>(&layout.journal())? else { return Ok(None) };
    let root = Root::open(layout.root())?;
    if j.seq > state.seq {
        restore(layout, &root, &j)?;
        Ok(Some(format!(
            "an interrupted change to generation {} was rolled back; the host is on generation {}",
            gen_name(j.to),
            gen_name(j.from)
        )))
    } else {
        for op in &j.ops {
            if let Ok(safefs::Parent::Dir(fd)) = root.parent(&op.path, false) {
                let _ = safefs::remove_file(fd.as_fd(), &tmp_name(&op.path, "new"));
            }
        }
        finish(layout)?;
        Ok(Some(format!("the change to generation {} had committed; finished it", gen_name(j.to))))
    }
}

/// The last committed transition, if it is the one that produced the current
/// state (so it can be reverted).
pub fn last_undo(layout: &Layout, state: &StateFile) -> Result<Option<Journal>> {
    Ok(read_json::<Journal>(&layout.undo())?.filter(|j| j.seq == state.seq))
}

pub fn gen_name(g: Option<u64>) -> String {
    g.map_or_else(|| "none".to_string(), |g| g.to_string())
}

#[cfg(test)]
mod tests;
