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
//!
//! Here: the journal, its commit, recovery and undo. What to change (and
//! keeping what it replaces) is `plan.rs`'s; doing it in a safe order,
//! `execute.rs`'s.

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

use crate::fsops;
use crate::layout::Layout;
use crate::pathstate::PathState;
use crate::safefs::{self, Root, Walker};
use crate::state::{load_statcache, read_json, write_json, StateFile};
use crate::{blobs, hooks, Context, Result};

mod execute;
mod plan;
use execute::{execute, tmp_name};
use plan::{ingest, plan};

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

/// How deep `p` lies (its count of `/`): removals go deepest first,
/// directories are made shallowest first.
fn depth(p: &str) -> usize {
    p.matches('/').count()
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
        let (now, _) = w.read_state(&op.path, cache.get(&op.path).copied())?;
        if let PathState::File { content: hash, .. } = &now {
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
