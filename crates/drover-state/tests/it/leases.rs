//! Runs carry an owner and a lease its heartbeat renews; a run whose owner
//! stopped renewing it (killed, hung, its machine gone) is marked abandoned
//! by the next run, on both backends, whatever machine it ran on.

use std::time::Duration;

use drover_state::{now_ms, Outcome, RunStatus};

use crate::support::{begin, result, Open};

fn expired_runs_are_abandoned_by_the_next_run_and_live_ones_are_not(open: Open) {
    let mut dead = open();
    dead.set_lock_lease(Duration::from_millis(300));
    let killed = begin(&mut dead, "apply");
    // The killed run got as far as activating one host.
    dead.record_host(&result(killed, "h1", Outcome::Activated, now_ms())).unwrap();
    let row = dead.run(killed).unwrap().unwrap();
    assert_eq!(row.owner, Some(drover_state::owner()));
    assert!(row.lease_expires_ms.is_some_and(|t| t > now_ms()), "{row:?}");
    drop(dead);

    let mut live = open();
    live.set_lock_lease(Duration::from_secs(60));
    let alive = begin(&mut live, "apply");
    assert_eq!(live.run(killed).unwrap().unwrap().status, RunStatus::Running, "its lease has not run out yet");
    std::thread::sleep(Duration::from_millis(400));
    assert!(live.heartbeat(alive).unwrap());
    assert!(live.run(killed).unwrap().unwrap().is_orphaned(now_ms()));

    let mut next = open();
    let third = begin(&mut next, "apply");
    let killed_row = next.run(killed).unwrap().unwrap();
    assert_eq!(killed_row.status, RunStatus::Abandoned);
    assert_eq!(killed_row.finished_ms, killed_row.lease_expires_ms, "finished when its owner was last known alive");
    assert_eq!(next.run(alive).unwrap().unwrap().status, RunStatus::Running, "a renewed lease keeps a run");
    assert_eq!(next.run(third).unwrap().unwrap().status, RunStatus::Running);
    assert!(!next.heartbeat(killed).unwrap(), "an abandoned run's late heartbeat does not revive it");
    assert_eq!(next.run(killed).unwrap().unwrap().status, RunStatus::Abandoned);
    let h = next.run_results(killed).unwrap();
    assert_eq!((h.len(), h[0].outcome), (1, Outcome::Activated), "the host it touched stays recorded");
    assert_eq!(next.mark_abandoned().unwrap(), Vec::<i64>::new());
    // The copy between backends keeps owners and leases.
    let snap = next.export().unwrap();
    assert!(snap.runs.iter().all(|(r, _)| r.owner.is_some() && r.lease_expires_ms.is_some()));
}
on_both!(
    expired_runs_are_abandoned_by_the_next_run_and_live_ones_are_not: sqlite_runs_abandoned_by_lease,
    pg_runs_abandoned_by_lease
);
