//! Which hosts a `reconcile = "heal"` pass re-applies, and which it leaves
//! behind on purpose.
//!
//! Healed: reachable, not drained, not held, and drifted, never applied,
//! or `behind` (its generation is not what the project compiles for it
//! now: it missed a release while unreachable, say). Held: a host whose
//! newest successful run was `drover rollback` stays on the generation an
//! operator rolled it back to (the release it left may be the bad one)
//! until the next apply or rollout reaches it; the page and the API say so
//! ([`Hold`]). Drained hosts and hosts in an unfinished rollout are left
//! alone by the caller.

use std::collections::{HashMap, HashSet};

use drover_spec::Host;
use drover_state::{HostResult, Outcome, StateError, Store};

use super::snapshot::Hold;
use crate::run::status::{Currency, Judged};

/// Hosts a hold could apply to: reachable, and drifted or behind (a hold
/// is looked up in the store only for these).
pub(crate) fn candidates(results: &[Judged]) -> Vec<String> {
    results
        .iter()
        .filter_map(|(h, r)| {
            let (s, _, c) = r.as_ref().ok()?;
            (!s.drift.is_empty() || *c == Currency::Behind).then(|| h.clone())
        })
        .collect()
}

/// Reachable, not drained, not held, and drifted, never applied, or
/// behind the project.
pub(crate) fn needs_heal(hosts: &[Host], results: &[Judged], holds: &HashMap<String, Hold>) -> Vec<Host> {
    let want: HashSet<&str> = results
        .iter()
        .filter_map(|(h, r)| {
            let (s, _, c) = r.as_ref().ok()?;
            let off = !s.drift.is_empty() || s.state.current.is_none() || *c == Currency::Behind;
            (s.drained.is_none() && off && !holds.contains_key(h)).then_some(h.as_str())
        })
        .collect();
    hosts.iter().filter(|h| want.contains(h.name.as_str())).cloned().collect()
}

/// A run's result that left the host on a generation it chose (an
/// activation, confirmed or not yet, counts: that generation is live).
fn applied(o: Outcome) -> bool {
    match o {
        Outcome::Changed | Outcome::Unchanged | Outcome::Rebooted | Outcome::Activated => true,
        Outcome::Failed | Outcome::RolledBack | Outcome::Unreachable | Outcome::Planned | Outcome::Skipped => false,
    }
}

/// Results looked at per host for its newest successful one (failed
/// retries after a rollback are not many).
const LOOK_BACK: i64 = 200;

/// The holds on `hosts`: each one whose newest successful result came from
/// a `drover rollback` run. `latest` (each host's newest result, read for
/// the page anyway) answers for a host whose newest result succeeded; only
/// the others' histories are read (a release missed by 10,000 hosts costs
/// no 10,000 queries).
pub(crate) fn holds(
    store: &Store,
    hosts: &[String],
    latest: &[HostResult],
) -> Result<HashMap<String, Hold>, StateError> {
    let latest: HashMap<&str, &HostResult> = latest.iter().map(|r| (r.host.as_str(), r)).collect();
    let mut newest = Vec::new();
    for h in hosts {
        let run = match latest.get(h.as_str()) {
            Some(r) if applied(r.outcome) => Some(r.run_id),
            _ => store.history(Some(h), LOOK_BACK)?.into_iter().find(|r| applied(r.outcome)).map(|r| r.run_id),
        };
        if let Some(run) = run {
            newest.push((h.clone(), run));
        }
    }
    let Some(oldest) = newest.iter().map(|(_, run)| *run).min() else { return Ok(HashMap::new()) };
    // Newest runs first, as many as reach back to the oldest one asked
    // about (a server records a run per pass: do not read them all).
    let mut ask = 256;
    let runs = loop {
        let runs = store.runs(ask)?;
        if (runs.len() as i64) < ask || runs.last().is_some_and(|r| r.id <= oldest) {
            break runs;
        }
        ask = ask.saturating_mul(4);
    };
    let verb = crate::host::Mode::Rollback { to: None }.verb();
    let rollbacks: HashSet<i64> = runs.into_iter().filter(|r| r.command == verb).map(|r| r.id).collect();
    Ok(newest
        .into_iter()
        .filter(|(_, run)| rollbacks.contains(run))
        .map(|(h, run)| (h, Hold::Rollback { run }))
        .collect())
}

#[cfg(test)]
mod tests {
    use drover_state::{HostResult, NewRun, Outcome, Store};

    use super::{holds, Hold};

    fn run(store: &mut Store, command: &str, host: &str, outcome: Outcome) -> i64 {
        let id = store
            .begin_run(&NewRun {
                command: command.into(),
                args: String::new(),
                user: "t".into(),
                project_rev: "-".into(),
            })
            .unwrap();
        let r = HostResult {
            run_id: id,
            host: host.into(),
            outcome,
            generation: Some(id),
            changes: 0,
            bytes_sent: 0,
            files_written: 0,
            duration_ms: 0,
            error: None,
            detail: String::new(),
            at_ms: drover_state::now_ms() + id,
        };
        store.record_host(&r).unwrap();
        store.finish_run(id, drover_state::RunStatus::Ok).unwrap();
        id
    }

    fn held(store: &Store, host: &str) -> Option<Hold> {
        let latest = store.latest_per_host().unwrap();
        holds(store, &[host.to_string()], &latest).unwrap().remove(host)
    }

    /// Held from a successful rollback until the next successful apply or
    /// rollout, failed attempts in between changing nothing (they left the
    /// host where the rollback put it); a failed rollback holds nothing.
    #[test]
    fn a_rollback_holds_through_failed_runs_until_a_successful_apply_or_rollout() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state.db")).unwrap();
        run(&mut store, "apply", "h", Outcome::Changed);
        assert_eq!(held(&store, "h"), None);
        let rb = run(&mut store, "rollback", "h", Outcome::Changed);
        assert_eq!(held(&store, "h"), Some(Hold::Rollback { run: rb }));
        // Many passes since (more than one read of runs reaches back).
        for _ in 0..300 {
            run(&mut store, "reconcile", "other", Outcome::Changed);
        }
        run(&mut store, "apply", "h", Outcome::Unreachable);
        run(&mut store, "apply", "h", Outcome::Failed);
        assert_eq!(held(&store, "h"), Some(Hold::Rollback { run: rb }), "failed runs leave it held");
        run(&mut store, "rollout", "h", Outcome::Changed);
        assert_eq!(held(&store, "h"), None, "a rollout ends the hold");
        run(&mut store, "rollback", "h", Outcome::Failed);
        assert_eq!(held(&store, "h"), None, "a failed rollback holds nothing");
        assert_eq!(held(&store, "never-run"), None);
    }
}
