//! A rollout that stopped half-way holds its hosts: while it is paused, or
//! orphaned (its controller's lease ran out: killed, hung, its machine
//! gone), a plain `apply` or `rollback` of any of its hosts is refused
//! unless `--force`, so hosts of an unfinished rollout are not changed
//! behind its back (its batches done and undone would no longer say where
//! each host is). `drover rollout resume` or `abort` settles it first.

use drover_state::{now_ms, Rollout, RolloutStatus, RunStatus, Store};

use super::Plan;
use crate::run::Refusal;

/// Where an unfinished rollout stands, as `rollout status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its controller drives it (or it finished: see its status).
    Live(RolloutStatus),
    /// Unfinished, and its controller is gone: nothing will continue it
    /// until `drover rollout resume` (or `abort`).
    Orphaned(RolloutStatus),
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Standing::Live(s) => write!(f, "{s}"),
            Standing::Orphaned(s) => write!(f, "orphaned (was {s}; its controller is gone)"),
        }
    }
}

/// Where rollout `r` stands: orphaned when unfinished and its controller's
/// run is no longer running or stopped renewing its lease (by lease, not
/// pid: the controller may have run on another machine).
pub fn standing(store: &Store, r: &Rollout) -> Result<Standing, drover_state::StateError> {
    if !r.status.is_unfinished() {
        return Ok(Standing::Live(r.status));
    }
    let run = r.run_id.map(|id| store.run(id)).transpose()?.flatten();
    let gone = run.is_some_and(|run| {
        run.status != RunStatus::Running || run.is_orphaned(now_ms()) || dead_here(run.owner.as_deref())
    });
    Ok(if gone { Standing::Orphaned(r.status) } else { Standing::Live(r.status) })
}

/// An owner (`machine:pid`) on this machine whose process is gone: known
/// dead at once, before its lease runs out (another machine's owner is
/// judged by its lease alone).
fn dead_here(owner: Option<&str>) -> bool {
    let Some((machine, pid)) = owner.and_then(|o| o.rsplit_once(':')) else { return false };
    machine == drover_state::machine()
        && pid
            .parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// Refused ([`Refusal::RolloutHolds`]) when a paused or orphaned rollout
/// holds any of `hosts`.
pub fn refuse_held(store: &Store, hosts: &[String]) -> anyhow::Result<()> {
    let Some(r) = store.unfinished_rollout()? else { return Ok(()) };
    let standing = standing(store, &r)?;
    if standing == Standing::Live(RolloutStatus::Running) {
        // Its controller holds its hosts' locks: those refuse.
        return Ok(());
    }
    let plan: Plan = serde_json::from_str(&r.plan)?;
    let held: Vec<String> = plan.batches.iter().flatten().filter(|h| hosts.contains(h)).cloned().collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(Refusal::RolloutHolds { id: r.id, standing: standing.to_string(), batch: r.next_batch + 1, hosts: held }.into())
}
