//! Garbage collection of old generations and unreferenced blobs.
//!
//! Runs only after a successful activation (a no-op apply must write
//! nothing). Keeps the newest [`KEEP_GENERATIONS`] generations, the current
//! one always, and every blob they or the undo record reference.

use std::collections::HashSet;
use std::fs;

use drover_proto::{EntryKind, Hash};

use crate::fsops::PathState;
use crate::layout::Layout;
use crate::state::{load_manifest, StateFile, KEEP_GENERATIONS};
use crate::transition;

pub fn collect(layout: &Layout, state: &mut StateFile) -> crate::Result<()> {
    let mut kept = state.kept.clone();
    kept.sort_unstable();
    let excess = kept.len().saturating_sub(KEEP_GENERATIONS);
    for g in kept.iter().take(excess).copied().filter(|g| Some(*g) != state.current) {
        let _ = fs::remove_file(layout.manifest(g));
        state.kept.retain(|k| *k != g);
    }
    state.save(layout)?;

    let mut live: HashSet<Hash> = HashSet::new();
    for g in &state.kept {
        if let Ok(m) = load_manifest(layout, *g) {
            live.extend(m.entries.iter().filter_map(|e| match e.kind {
                EntryKind::File { hash, .. } => Some(hash),
                EntryKind::Symlink { .. } => None,
            }));
        }
    }
    if let Some(undo) = transition::last_undo(layout, state)? {
        live.extend(undo.ops.iter().filter_map(|o| match o.prior {
            PathState::File { hash, .. } => Some(hash),
            _ => None,
        }));
    }
    let Ok(dir) = fs::read_dir(layout.blobs()) else { return Ok(()) };
    for entry in dir.flatten() {
        let name = entry.file_name();
        match Hash::from_hex(&name.to_string_lossy()) {
            Some(h) if live.contains(&h) => {}
            _ => {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}
