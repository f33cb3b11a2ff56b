//! `drover state migrate`: one store's whole history into another, checked.

use crate::{Snapshot, StateError, Store};

/// How many rows of each kind were copied (and found in the target after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyCounts {
    pub runs: usize,
    pub results: usize,
    pub audit: usize,
    pub facts: usize,
    pub drained: usize,
    pub rollouts: usize,
}

impl CopyCounts {
    fn of(s: &Snapshot) -> CopyCounts {
        CopyCounts {
            runs: s.runs.len(),
            results: s.results.len(),
            audit: s.audit.len(),
            facts: s.facts.len(),
            drained: s.drained.len(),
            rollouts: s.rollouts.len(),
        }
    }
}

/// Copy everything `from` recorded into `to`, which must be empty (no
/// runs): merging two histories would renumber runs and break the links
/// between runs, results and rollouts. The copy is read back and compared
/// row for row; any difference is an error naming the counts on both sides.
pub fn copy(from: &Store, to: &mut Store) -> Result<CopyCounts, StateError> {
    let have = to.b.runs(1)?;
    if !have.is_empty() {
        return Err(StateError::Copy(format!(
            "{} already has runs; copy into an empty database (create a new one, or drop drover's tables)",
            to.describe()
        )));
    }
    let snap = from.export()?;
    to.b.import(&snap)?;
    let back = to.export()?;
    let (want, got) = (CopyCounts::of(&snap), CopyCounts::of(&back));
    if want != got {
        return Err(StateError::Copy(format!("counts differ after the copy: source {want:?}, target {got:?}")));
    }
    if back != snap {
        return Err(StateError::Copy("the copy's rows differ from the source's (same counts)".into()));
    }
    Ok(want)
}
