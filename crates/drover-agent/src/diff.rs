//! Desired manifest vs. what is really on disk.
//!
//! The comparison is always against the disk, not against what the agent
//! believes it wrote: a hand edit on the host shows up as drift and is
//! restored by the next apply. The stat cache makes this cheap: an unchanged
//! file is not re-hashed.

use std::collections::{BTreeSet, HashMap};

use drover_proto::{Change, ChangeKind, EntryKind, Manifest, ServiceRestart};

use crate::accounts::Accounts;
use crate::layout::Layout;
use crate::pathstate::PathState;
use crate::safefs::{Root, Walker};
use crate::state::StatCache;
use crate::{services, Result};

/// A desired generation, compared with the host and ready to activate.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub manifest: Manifest,
    pub generation: u64,
    /// Every managed path and what it should be, removals included.
    pub wants: Vec<(String, PathState)>,
    pub changes: Vec<Change>,
    pub restarts: Vec<ServiceRestart>,
    /// Size of every file content the manifest names, by hash: each arriving
    /// chunk is checked against it (a lookup, not a scan of 20,000 entries).
    pub sizes: HashMap<drover_proto::Hash, u64>,
}

/// Manifest entries with owner names resolved to this host's ids.
pub fn resolve(m: &Manifest, accounts: &Accounts) -> Result<HashMap<String, PathState>> {
    m.entries
        .iter()
        .map(|e| {
            let uid = || accounts.uid(&e.owner).map_err(|err| crate::AgentError::new(format!("{}: {err}", e.path)));
            let gid = || accounts.gid(&e.group).map_err(|err| crate::AgentError::new(format!("{}: {err}", e.path)));
            let st = match &e.kind {
                EntryKind::File { hash, .. } => {
                    PathState::File { content: *hash, mode: e.mode, uid: uid()?, gid: gid()? }
                }
                EntryKind::Symlink { target } => PathState::Symlink { target: target.clone() },
                EntryKind::Dir => PathState::Dir { mode: e.mode, uid: uid()?, gid: gid()? },
            };
            Ok((e.path.clone(), st))
        })
        .collect()
}

/// What is at `path` now, through the stat cache.
pub fn actual(w: &mut Walker<'_>, cache: &StatCache, path: &str) -> Result<PathState> {
    let cached = cache.get(path).copied();
    Ok(w.read_state(path, cached)?.0)
}

pub fn diff(
    layout: &Layout,
    accounts: &Accounts,
    cache: &StatCache,
    current: Option<&Manifest>,
    desired: Manifest,
    generation: u64,
) -> Result<Candidate> {
    let want_map = resolve(&desired, accounts)?;
    let cur_map = match current {
        Some(m) => resolve(m, accounts).unwrap_or_default(),
        None => HashMap::new(),
    };
    let mut wants: Vec<(String, PathState)> =
        desired.entries.iter().map(|e| (e.path.clone(), want_map[&e.path].clone())).collect();
    if let Some(cur) = current {
        for e in &cur.entries {
            if !want_map.contains_key(&e.path) {
                wants.push((e.path.clone(), PathState::Absent));
            }
        }
    }
    let root = Root::open(layout.root())?;
    let mut w = Walker::new(&root);
    let mut changes = Vec::new();
    for (path, want) in &wants {
        let now = actual(&mut w, cache, path)?;
        if &now == want {
            continue;
        }
        let kind = match (want, cur_map.get(path)) {
            (PathState::Absent, _) if now == PathState::Absent => continue,
            (PathState::Absent, _) => ChangeKind::Remove,
            (_, None) => ChangeKind::Add,
            (w, Some(c)) if w == c => ChangeKind::Restore,
            _ => ChangeKind::Modify,
        };
        changes.push(Change { path: path.clone(), kind });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let changed: BTreeSet<String> = changes.iter().map(|c| c.path.clone()).collect();
    let restarts = services::plan(current, &desired, &changed);
    let sizes = desired
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { hash, size } => Some((hash, size)),
            _ => None,
        })
        .chain(desired.setup.packages.iter().map(|p| (p.hash, p.size)))
        .collect();
    Ok(Candidate { manifest: desired, generation, wants, changes, restarts, sizes })
}

/// Managed paths whose content differs from what generation `m` says.
pub fn drift(layout: &Layout, accounts: &Accounts, cache: &StatCache, m: &Manifest) -> Result<Vec<String>> {
    let want = resolve(m, accounts)?;
    let root = Root::open(layout.root())?;
    let mut w = Walker::new(&root);
    let mut out = Vec::new();
    for e in &m.entries {
        if actual(&mut w, cache, &e.path)? != want[&e.path] {
            out.push(e.path.clone());
        }
    }
    Ok(out)
}
