//! Garbage collection of old generations, unreferenced blobs, abandoned
//! transfers, old backups and failed generations' manifests.
//!
//! Runs only after a successful activation (a no-op apply must write
//! nothing). Retention, all in [`crate::state`]:
//! - generations: the newest [`KEEP_GENERATIONS`], the current one always;
//! - blobs: those a kept generation or the undo record references;
//! - `partial/`: incomplete transfers untouched for [`PARTIAL_RETENTION`]
//!   (a resume after that starts over); leftovers of local copies and
//!   deltas' parts (never resumed) always;
//! - `backup/<gen>/`: kept while `gen` is kept, then for [`BACKUP_RETENTION`];
//! - failed generations: the manifests of the newest [`KEEP_FAILED`].

use std::collections::HashSet;
use std::fs;
use std::time::SystemTime;

use drover_proto::{EntryKind, Hash};

use crate::layout::Layout;
use crate::pathstate::PathState;
use crate::state::{load_manifest, StateFile, BACKUP_RETENTION, KEEP_FAILED, KEEP_GENERATIONS, PARTIAL_RETENTION};
use crate::transition;

pub fn collect(layout: &Layout, state: &mut StateFile) -> crate::Result<()> {
    collect_at(layout, state, SystemTime::now())
}

/// [`collect`] as if it were `now` (tests age files by moving the clock).
pub fn collect_at(layout: &Layout, state: &mut StateFile, now: SystemTime) -> crate::Result<()> {
    let mut kept = state.kept.clone();
    kept.sort_unstable();
    let excess = kept.len().saturating_sub(KEEP_GENERATIONS);
    for g in kept.iter().take(excess).copied().filter(|g| Some(*g) != state.current) {
        let _ = fs::remove_file(layout.manifest(g));
        state.kept.retain(|k| *k != g);
    }
    state.failed.sort_unstable();
    let drop_failed = state.failed.len().saturating_sub(KEEP_FAILED);
    for g in state.failed.drain(..drop_failed) {
        let _ = fs::remove_file(layout.manifest(g));
    }
    state.save(layout)?;

    let mut live: HashSet<Hash> = HashSet::new();
    for g in &state.kept {
        if let Ok(m) = load_manifest(layout, *g) {
            live.extend(m.entries.iter().filter_map(|e| match e.kind {
                EntryKind::File { hash, .. } => Some(hash),
                EntryKind::Symlink { .. } | EntryKind::Dir => None,
            }));
            // Kept for relaying to peers and for reinstalling after drift.
            live.extend(m.setup.packages.iter().map(|p| p.hash));
        }
    }
    if let Some(undo) = transition::last_undo(layout, state)? {
        live.extend(undo.ops.iter().filter_map(|o| match o.prior {
            PathState::File { content: hash, .. } => Some(hash),
            _ => None,
        }));
    }
    if let Ok(dir) = fs::read_dir(layout.blobs()) {
        for entry in dir.flatten() {
            match Hash::from_hex(&entry.file_name().to_string_lossy()) {
                Some(h) if live.contains(&h) => {}
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    let older_than = |md: &fs::Metadata, age| md.modified().ok().and_then(|m| now.duration_since(m).ok()) > Some(age);
    if let Ok(dir) = fs::read_dir(layout.partial_dir()) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A delta is never resumed (a new one starts at offset 0).
            let local_copy = name.starts_with("ingest-") || name.ends_with(".delta");
            let stale = entry.metadata().is_ok_and(|md| older_than(&md, PARTIAL_RETENTION));
            if local_copy || stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    if let Ok(dir) = fs::read_dir(layout.state_dir().join("backup")) {
        for entry in dir.flatten() {
            let gen: Option<u64> = entry.file_name().to_string_lossy().parse().ok();
            let kept = gen.is_some_and(|g| state.kept.contains(&g));
            if !kept && entry.metadata().is_ok_and(|md| older_than(&md, BACKUP_RETENTION)) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retention_drops_old_partials_backups_and_failed_manifests_only() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        let mut st =
            StateFile { current: Some(9), next: 10, kept: vec![8, 9], failed: vec![2, 3, 4, 5], ..Default::default() };
        for g in [2, 3, 4, 5, 8, 9] {
            crate::state::save_manifest(&l, g, &drover_proto::Manifest::default()).unwrap();
        }
        crate::fsops::private_dir(&l.partial_dir()).unwrap();
        fs::write(l.partial_dir().join("ab".repeat(32)), b"half").unwrap();
        fs::write(l.partial_dir().join("ingest-x"), b"left over").unwrap();
        let delta = l.partial_dir().join(format!("{}.delta", "cd".repeat(32)));
        fs::write(&delta, b"a delta cut short").unwrap();
        for g in ["1", "9"] {
            let b = l.backup(g.parse().unwrap(), "/etc/x");
            crate::fsops::private_dir(b.parent().unwrap()).unwrap();
            fs::write(&b, b"old").unwrap();
        }
        // A day later: the partial stays (resumable), the local copy and
        // the delta's parts (never resumed) go.
        collect_at(&l, &mut st, SystemTime::now() + Duration::from_secs(86_400)).unwrap();
        assert!(l.partial_dir().join("ab".repeat(32)).exists());
        assert!(!l.partial_dir().join("ingest-x").exists() && !delta.exists());
        assert_eq!(st.failed, vec![3, 4, 5], "the oldest failed generation's manifest goes");
        assert!(!l.manifest(2).exists() && l.manifest(3).exists());
        assert!(l.backup(1, "/etc/x").exists(), "backups stay for 30 days");
        // Forty days later: the partial and the unkept generation's backup go.
        collect_at(&l, &mut st, SystemTime::now() + Duration::from_secs(40 * 86_400)).unwrap();
        assert!(!l.partial_dir().join("ab".repeat(32)).exists());
        assert!(!l.state_dir().join("backup/1").exists());
        assert!(l.backup(9, "/etc/x").exists(), "a kept generation's backup stays");
        assert!(l.manifest(8).exists() && l.manifest(9).exists());
    }
}
