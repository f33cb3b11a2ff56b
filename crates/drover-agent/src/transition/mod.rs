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
//! Before step 1 writes anything, [`prepare`] checks that everything fits
//! on every filesystem the transition writes to (`needs.rs`): a transition
//! that cannot is refused with the filesystem, its free space and what it
//! needs. A write the filesystem refuses later (full, read-only, failing)
//! undoes the transition and says the same (see [`crate::space`]); going
//! back rewrites only paths the attempt changed, and removes its
//! temporaries, so it needs no room a full disk lacks.
//!
//! Here: the journal, its commit, recovery and undo. What to change (and
//! keeping what it replaces) is `plan.rs`'s; doing it in a safe order,
//! `execute.rs`'s; what it needs on each filesystem, `needs.rs`'s.

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

use crate::fsops;
use crate::layout::Layout;
use crate::pathstate::PathState;
use crate::safefs::{self, Root, Walker};
use crate::space::Needs;
use crate::state::{load_statcache, read_json, write_json, StateFile};
use crate::{blobs, hooks, AgentError, Context, Result};
use drover_proto::StorageLeft;

mod execute;
mod needs;
mod plan;
use execute::{execute, tmp_name};
use plan::{ingest, keep, plan, Keep};

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

/// A transition planned and found to fit, nothing written yet.
pub struct Prepared {
    from: Option<u64>,
    to: Option<u64>,
    ops: Vec<Op>,
    keeps: Vec<Keep>,
    needs: Needs,
}

/// Plan the move from generation `from` to `to` that makes each path in
/// `wants` what it says, and refuse it unless every filesystem it writes to
/// has room (see `needs.rs`). Reads only. `managed` is what `from` says each
/// path should be: prior content that differs from it is backed up before
/// being replaced.
pub fn prepare(
    layout: &Layout,
    state: &StateFile,
    from: Option<u64>,
    to: Option<u64>,
    wants: Vec<(String, PathState)>,
    managed: &HashMap<String, PathState>,
) -> Result<Prepared> {
    let root = Root::open(layout.root())?;
    let (ops, keeps) = plan(layout, &root, state, wants, managed)?;
    let needs = needs::needs(layout, &root, &ops, &keeps);
    needs.check(from)?;
    Ok(Prepared { from, to, ops, keeps, needs })
}

/// Carry out a prepared transition: keep what it replaces, journal, execute,
/// commit. On any failure before the commit the host is put back on `from`.
pub fn run(layout: &Layout, state: &mut StateFile, p: Prepared) -> Result<Done> {
    let root = Root::open(layout.root())?;
    let kept = keep(layout, &root, &p.keeps, p.to.unwrap_or(0));
    kept.map_err(|e| e.settle(StorageLeft::Untouched, p.from, &p.needs))?;
    commit(layout, &root, state, p.from, p.to, p.ops, &p.needs)
}

/// Undo a committed transition `j`: every path back to its prior state, as
/// a transition of its own (journaled, so a crash during the undo is safe).
/// Never refused for space: it is the way back.
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
    commit(layout, &root, state, j.to, j.from, ops, &Needs::default())
}

fn commit(
    layout: &Layout,
    root: &Root,
    state: &mut StateFile,
    from: Option<u64>,
    to: Option<u64>,
    ops: Vec<Op>,
    needs: &Needs,
) -> Result<Done> {
    let seq = state.seq + 1;
    let journal = Journal { seq, from, to, ops };
    if let Err(e) = write_json(&layout.journal(), &journal) {
        // Nothing executed: a journal that landed anyway goes.
        let _ = crate::fsops::remove(&layout.journal());
        return Err(e.settle(StorageLeft::Untouched, from, needs));
    }
    if let Err(e) = execute(layout, root, &journal.ops, |o| &o.want, true) {
        // Not committed: put everything back as it was, then report.
        return Err(back(layout, root, &journal, e, needs));
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
    if let Err(e) = next.save(layout) {
        // Committed if the rename landed (the error was the fsync after it).
        if StateFile::load(layout).map(|s| s.seq).ok() != Some(seq) {
            return Err(back(layout, root, &journal, e, needs));
        }
    }
    *state = next;
    hooks::point(layout, "after-commit");
    // Retiring the journal is bookkeeping: if it fails, the committed
    // journal is the undo record ([`last_undo`] reads it) and the next
    // session retires it.
    let _ = finish(layout);
    Ok(Done { ops: journal.ops })
}

/// A transition failed before its commit with `e`: put the host back, and
/// say where that left it.
fn back(layout: &Layout, root: &Root, j: &Journal, e: AgentError, needs: &Needs) -> AgentError {
    match restore(layout, root, j) {
        Ok(()) => e.settle(StorageLeft::RolledBack, j.from, needs),
        Err(again) => {
            let mut e = e.settle(StorageLeft::Unfinished, j.from, needs);
            e.0 = format!("{}; rolling back failed too ({again}): the next session finishes it", e.0);
            e
        }
    }
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
    hooks::fault("retire")
        .and_then(|()| fs::rename(layout.journal(), layout.undo()))
        .ctx(|| "retire journal".into())?;
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
    // A committed journal not yet retired (the rename failed) is the record.
    if let Some(j) = read_json::<Journal>(&layout.journal())?.filter(|j| j.seq == state.seq) {
        return Ok(Some(j));
    }
    Ok(read_json::<Journal>(&layout.undo())?.filter(|j| j.seq == state.seq))
}

pub fn gen_name(g: Option<u64>) -> String {
    g.map_or_else(|| "none".to_string(), |g| g.to_string())
}

#[cfg(test)]
mod tests;
