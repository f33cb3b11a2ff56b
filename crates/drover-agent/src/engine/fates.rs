//! What became of generations activated but never confirmed: replaced by
//! another activation (a rollback from a controller that does not share
//! the first one's state store) or reverted at their deadline. Kept so a
//! late `Confirm` is answered with what happened ([`Unconfirmable`]), not
//! a guess: a controller must not blame "confirmation came too late" for a
//! generation another controller rolled back.
//!
//! A short list in `state/unconfirmed.json`, newest last; losing it costs
//! only the precise answer ([`Unconfirmable::NotLive`]).

use drover_proto::Unconfirmable;
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::state::{read_json, write_json};

/// How many generations' fates are kept: a late confirmation comes within
/// one confirm timeout, a handful of activations at most.
const KEEP: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fate {
    generation: u64,
    why: Unconfirmable,
}

/// Record `generation`'s fate. Best effort: the host is already on
/// whatever replaced it, and a lost record only makes an answer vaguer.
pub(super) fn record(layout: &Layout, generation: u64, why: Unconfirmable) {
    let path = layout.unconfirmed();
    let mut all: Vec<Fate> = read_json(&path).ok().flatten().unwrap_or_default();
    all.retain(|f| f.generation != generation);
    all.push(Fate { generation, why });
    let excess = all.len().saturating_sub(KEEP);
    all.drain(..excess);
    if let Err(e) = write_json(&path, &all) {
        eprintln!("drover-agent: could not record what became of generation {generation}: {}", e.0);
    }
}

/// What became of `generation`, if recorded.
pub(super) fn find(layout: &Layout, generation: u64) -> Option<Unconfirmable> {
    let all: Vec<Fate> = read_json(&layout.unconfirmed()).ok().flatten()?;
    all.into_iter().rev().find(|f| f.generation == generation).map(|f| f.why)
}
