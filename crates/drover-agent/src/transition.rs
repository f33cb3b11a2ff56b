//! Journaled transitions: move a set of paths from what they are to what they
//! should be, such that after any crash the host can be put back on exactly
//! one side.
//!
//! 1. Read every path's prior state. Prior content that is not in the blob
//!    store (unmanaged files, hand edits) is stored there, and unmanaged files
//!    are also copied to `backup/<gen>/<path>`: nothing drover replaces is lost.
//! 2. Write `journal.json` (ops with priors, directories to create, `seq`).
//! 3. Stage: create directories, write every new file and symlink to a
//!    temporary name beside its target, fsynced.
//! 4. Swap: rename temporaries over targets; unlink removed paths.
//! 5. Commit: `state.json` with `seq` bumped — the single atomic commit point.
//! 6. The journal is renamed to `undo.json`: the record of how to go back.
//!
//! [`recover`] runs at every agent start: a journal whose `seq` is above the
//! committed one is rolled back (priors restored, temporaries and created
//! directories removed); one at or below it is finished.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsops::{self, PathState};
use crate::layout::Layout;
use crate::state::{read_json, write_json, StateFile};
use crate::{bail, blobs, hooks, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub path: String,
    pub want: PathState,
    pub prior: PathState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub seq: u64,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub ops: Vec<Op>,
    /// Directories this transition creates, shallowest first.
    pub created_dirs: Vec<String>,
}

/// What a transition did.
#[derive(Debug, Default)]
pub struct Done {
    pub ops: Vec<Op>,
}

impl Done {
    pub fn changed_paths(&self) -> BTreeSet<String> {
        self.ops.iter().map(|o| o.path.clone()).collect()
    }
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
    let seq = state.seq + 1;
    let ops = collect_ops(layout, wants, managed, to.unwrap_or(0))?;
    let created_dirs = dirs_to_create(layout, &ops);
    let journal = Journal { seq, from, to, ops, created_dirs };
    write_json(&layout.journal(), &journal)?;

    if let Err(e) = stage_and_swap(layout, &journal) {
        // Not committed: put everything back as it was, then report.
        restore(layout, &journal)?;
        return Err(e);
    }
    state.seq = seq;
    state.current = to;
    state.save(layout)?;
    hooks::point(layout, "after-commit");
    finish(layout)?;
    Ok(Done { ops: journal.ops })
}

/// Compare wants with the disk; keep only paths that change.
fn collect_ops(
    layout: &Layout,
    wants: Vec<(String, PathState)>,
    managed: &HashMap<String, PathState>,
    backup_gen: u64,
) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (path, want) in wants {
        let target = layout.target(&path);
        let (prior, _) = fsops::read_state(&target, None)?;
        if prior == want {
            continue;
        }
        match (&prior, &want) {
            (PathState::Other { .. }, PathState::Absent) => continue,
            (PathState::Other { what }, _) => bail!("{path}: refusing to replace {what} with a managed file"),
            (PathState::File { hash, .. }, _) => {
                blobs::ingest(layout, &target, hash)?;
                if managed.get(&path) != Some(&prior) {
                    let backup = layout.backup(backup_gen, &path);
                    fs::create_dir_all(backup.parent().unwrap_or(Path::new("/"))).ctx(|| "create backup dir".into())?;
                    fs::copy(&target, &backup).ctx(|| format!("back up {path}"))?;
                }
            }
            _ => {}
        }
        ops.push(Op { path, want, prior });
    }
    Ok(ops)
}

fn dirs_to_create(layout: &Layout, ops: &[Op]) -> Vec<String> {
    let mut dirs = BTreeSet::new();
    for op in ops.iter().filter(|o| o.want != PathState::Absent) {
        let mut p = Path::new(&op.path).parent();
        while let Some(dir) = p {
            if dir == Path::new("/") {
                break;
            }
            let s = dir.to_string_lossy().into_owned();
            if !layout.target(&s).exists() {
                dirs.insert(s);
            }
            p = dir.parent();
        }
    }
    let mut dirs: Vec<String> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| d.matches('/').count());
    dirs
}

/// Temporary name beside the target. Fixed length (a hash of the path) so a
/// long file name cannot push it past NAME_MAX; `role` keeps forward and
/// restore temporaries apart.
fn tmp_path(layout: &Layout, path: &str, role: &str) -> PathBuf {
    let target = layout.target(path);
    let tag = &blake3::hash(path.as_bytes()).to_hex()[..16];
    target.with_file_name(format!(".drover-{role}-{tag}"))
}

fn stage_one(layout: &Layout, path: &str, want: &PathState, role: &str) -> Result<()> {
    let tmp = tmp_path(layout, path, role);
    match want {
        PathState::File { hash, mode, uid, gid } => fsops::stage_file(&tmp, &layout.blob(hash), *mode, *uid, *gid),
        PathState::Symlink { target } => fsops::stage_symlink(&tmp, target),
        PathState::Absent | PathState::Other { .. } => Ok(()),
    }
}

fn swap_one(layout: &Layout, path: &str, want: &PathState, role: &str) -> Result<()> {
    let target = layout.target(path);
    match want {
        PathState::Absent => fsops::remove(&target),
        PathState::Other { .. } => Ok(()),
        _ => fs::rename(tmp_path(layout, path, role), &target).ctx(|| format!("rename into {path}")),
    }
}

fn parents(layout: &Layout, ops: &[Op]) -> BTreeSet<PathBuf> {
    ops.iter().filter_map(|o| layout.target(&o.path).parent().map(Path::to_path_buf)).filter(|p| p.exists()).collect()
}

fn stage_and_swap(layout: &Layout, j: &Journal) -> Result<()> {
    for d in &j.created_dirs {
        fs::create_dir_all(layout.target(d)).ctx(|| format!("create directory {d}"))?;
    }
    for op in &j.ops {
        stage_one(layout, &op.path, &op.want, "new")?;
    }
    hooks::point(layout, "after-stage");
    let half = j.ops.len() / 2;
    for (i, op) in j.ops.iter().enumerate() {
        if i == half {
            hooks::point(layout, "mid-swap");
        }
        swap_one(layout, &op.path, &op.want, "new")?;
    }
    for dir in parents(layout, &j.ops) {
        fsops::sync_dir(&dir)?;
    }
    Ok(())
}

/// Undo an uncommitted journal: every path back to its prior state. Safe to
/// run any number of times (a crash during recovery just recovers again).
fn restore(layout: &Layout, j: &Journal) -> Result<()> {
    for op in j.ops.iter().rev() {
        let _ = fsops::remove(&tmp_path(layout, &op.path, "new"));
        let (now, _) = fsops::read_state(&layout.target(&op.path), None)?;
        if now == op.prior {
            continue;
        }
        stage_one(layout, &op.path, &op.prior, "old")?;
        swap_one(layout, &op.path, &op.prior, "old")?;
    }
    for d in j.created_dirs.iter().rev() {
        // Only empty ones: never delete something that appeared meanwhile.
        let _ = fs::remove_dir(layout.target(d));
    }
    for dir in parents(layout, &j.ops) {
        fsops::sync_dir(&dir)?;
    }
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
    if j.seq > state.seq {
        restore(layout, &j)?;
        Ok(Some(format!(
            "an interrupted change to generation {} was rolled back; the host is on generation {}",
            gen_name(j.to),
            gen_name(j.from)
        )))
    } else {
        for op in &j.ops {
            let _ = fsops::remove(&tmp_path(layout, &op.path, "new"));
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
mod tests {
    use super::*;
    use drover_proto::Hash;

    fn put_blob(l: &Layout, data: &[u8]) -> Hash {
        let h = Hash(*blake3::hash(data).as_bytes());
        fs::create_dir_all(l.blobs()).unwrap();
        fs::write(l.blob(&h), data).unwrap();
        h
    }

    fn file(h: Hash) -> PathState {
        PathState::File { hash: h, mode: 0o644, uid: 0, gid: 0 }
    }

    #[test]
    fn transition_writes_backs_up_and_records_undo() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/unmanaged.conf"), b"precious").unwrap();
        let h = put_blob(&l, b"new content");
        let mut st = StateFile::load(&l).unwrap();
        let wants = vec![("/etc/unmanaged.conf".to_string(), file(h)), ("/srv/a/b/c.txt".to_string(), file(h))];
        let done = run(&l, &mut st, None, Some(1), wants, &HashMap::new()).unwrap();
        assert_eq!(done.ops.len(), 2);
        assert_eq!(fs::read(dir.path().join("srv/a/b/c.txt")).unwrap(), b"new content");
        assert_eq!(fs::read(l.backup(1, "/etc/unmanaged.conf")).unwrap(), b"precious");
        assert_eq!(st.current, Some(1));
        assert_eq!(StateFile::load(&l).unwrap().seq, 1);
        let undo = last_undo(&l, &st).unwrap().unwrap();
        assert_eq!(undo.created_dirs, vec!["/srv", "/srv/a", "/srv/a/b"]);
        assert!(!l.journal().exists());
    }

    #[test]
    fn uncommitted_journal_is_rolled_back_completely() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/keep.conf"), b"old").unwrap();
        let h = put_blob(&l, b"new");
        let st = StateFile::load(&l).unwrap();
        let ops = collect_ops(
            &l,
            vec![("/etc/keep.conf".into(), file(h)), ("/opt/x/new.txt".into(), file(h))],
            &HashMap::new(),
            1,
        )
        .unwrap();
        let j = Journal { seq: st.seq + 1, from: None, to: Some(1), created_dirs: dirs_to_create(&l, &ops), ops };
        write_json(&l.journal(), &j).unwrap();
        // Simulate a crash after the swap but before the commit.
        stage_and_swap(&l, &j).unwrap();
        assert_eq!(fs::read(dir.path().join("etc/keep.conf")).unwrap(), b"new");
        let what = recover(&l, &st).unwrap().unwrap();
        assert!(what.contains("rolled back"), "{what}");
        assert_eq!(fs::read(dir.path().join("etc/keep.conf")).unwrap(), b"old");
        assert!(!dir.path().join("opt").exists(), "created directories removed");
        assert!(!l.journal().exists());
        assert!(recover(&l, &st).unwrap().is_none(), "recovery is idempotent");
    }

    #[test]
    fn directories_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        fs::create_dir_all(dir.path().join("etc/x")).unwrap();
        let h = put_blob(&l, b"f");
        let mut st = StateFile::load(&l).unwrap();
        let err = run(&l, &mut st, None, Some(1), vec![("/etc/x".into(), file(h))], &HashMap::new()).unwrap_err();
        assert!(err.0.contains("refusing to replace a directory"), "{err}");
        assert!(!l.journal().exists());
    }

    #[test]
    fn failed_stage_restores_priors() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/a"), b"old a").unwrap();
        let good = put_blob(&l, b"good");
        let missing = Hash([9; 32]);
        let mut st = StateFile::load(&l).unwrap();
        let wants = vec![("/etc/a".into(), file(good)), ("/etc/b".into(), file(missing))];
        assert!(run(&l, &mut st, None, Some(1), wants, &HashMap::new()).is_err());
        assert_eq!(fs::read(dir.path().join("etc/a")).unwrap(), b"old a");
        assert!(!dir.path().join("etc/b").exists());
        assert_eq!(st.current, None);
    }
}
