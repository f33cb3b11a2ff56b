//! What the agent says about a generation awaiting confirmation: in hello,
//! which one and until when (before a controller ships anything); at a late
//! `Confirm`, what became of it, typed (replaced by another controller's
//! rollback, or reverted at its deadline), never a guess.

use std::fs;
use std::time::{Duration, Instant};

use drover_proto::{ApplyOutcome, Request, Response, Unconfirmable};

use crate::support::files::{files, read};
use crate::support::Agent;

fn agent(root: &std::path::Path) -> Agent {
    Agent::spawn(root, &[], b"a sudo password line\n", 0)
}

fn root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("etc")).unwrap();
    d
}

fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn hello_names_the_pending_generation_and_its_deadline_and_a_rollback_replacing_it_is_told_at_confirm() {
    let d = root();
    let mut a = agent(d.path());
    a.apply(&files(&[("/etc/v", "one")]), 0);
    let before = now_ms();
    let r = a.apply(&files(&[("/etc/v", "two")]), 60_000);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    a.bye();

    // Another controller connects: the hello says what waits, until when.
    let mut b = agent(d.path());
    assert_eq!(b.state.pending_confirm, Some(2));
    let until = b.state.pending_deadline_ms.expect("the deadline comes with the pending generation");
    assert!((before + 60_000..=now_ms() + 60_000).contains(&until), "{until}");
    // It rolls the host back meanwhile (its own store knows nothing of gen 2).
    let r = b.call(Request::Rollback { to: Some(1), confirm_timeout_ms: 0 });
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 1, .. })), "{r:?}");
    b.bye();
    assert_eq!(read(d.path(), "/etc/v").as_deref(), Some("one"));

    // The first controller's confirmation, late: told it was replaced.
    let mut a = agent(d.path());
    assert_eq!((a.state.pending_confirm, a.state.pending_deadline_ms), (None, None));
    let r = a.call(Request::Confirm { generation: 2 });
    let want = Unconfirmable::Replaced { by: 1, rollback: true };
    assert!(matches!(r, Response::NotConfirmed { generation: 2, current: Some(1), why } if why == want), "{r:?}");
    a.bye();
}

#[test]
fn a_confirm_after_the_watchdog_reverted_is_told_the_deadline_passed() {
    let d = root();
    let mut a = agent(d.path());
    a.apply(&files(&[("/etc/v", "one")]), 0);
    a.apply(&files(&[("/etc/v", "two")]), 400);
    a.bye();
    let start = Instant::now();
    while read(d.path(), "/etc/v").as_deref() != Some("one") {
        assert!(start.elapsed() < Duration::from_secs(10), "watchdog did not revert");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut a = agent(d.path());
    let r = a.call(Request::Confirm { generation: 2 });
    assert!(
        matches!(r, Response::NotConfirmed { generation: 2, current: Some(1), why: Unconfirmable::Expired { .. } }),
        "{r:?}"
    );
    a.bye();
}
