//! The store's behaviour, written once and run on both backends: SQLite in
//! a temp dir, PostgreSQL on a real throwaway server (`drover-pgtest`).

use drover_state::{copy, AuditEntry, OpenAlert, Outcome, RolloutStatus, RunStatus, StateError, Store};

use crate::support::{begin, result, Open};

fn migrations_are_versioned_and_reopen_is_idempotent(open: Open) {
    let v = open().schema_version().unwrap();
    assert!(v >= 1);
    assert_eq!(open().schema_version().unwrap(), v);
}
on_both!(migrations_are_versioned_and_reopen_is_idempotent: sqlite_migrations_reopen, pg_migrations_reopen);

fn runs_results_history_and_audit(open: Open) {
    let mut s = open();
    let id = begin(&mut s, "apply");
    for (host, at) in [("h1", 10), ("h2", 20)] {
        s.record_host(&result(id, host, Outcome::Changed, at)).unwrap();
    }
    s.finish_run(id, RunStatus::Ok).unwrap();
    let runs = s.runs(10).unwrap();
    assert_eq!((runs[0].id, runs[0].status, runs[0].finished_ms.is_some()), (id, RunStatus::Ok, true));
    assert_eq!(s.run_pid(id).unwrap(), Some(std::process::id()));
    assert_eq!(s.history(Some("h1"), 10).unwrap().len(), 1);
    let all = s.history(None, 10).unwrap();
    assert_eq!(all.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["h2", "h1"]);
    assert_eq!(all[1], result(id, "h1", Outcome::Changed, 10), "a result reads back whole");
    s.audit(&AuditEntry {
        at_ms: 99,
        user: "op2".into(),
        command: "drain".into(),
        args: "h3".into(),
        project_rev: "r".into(),
        run_id: None,
    })
    .unwrap();
    let audit = s.audit_log(10).unwrap();
    assert_eq!((audit[0].command.as_str(), audit[0].run_id), ("drain", None));
    assert_eq!((audit[1].command.as_str(), audit[1].user.as_str(), audit[1].run_id), ("apply", "op", Some(id)));
}
on_both!(runs_results_history_and_audit: sqlite_runs_results_history_audit, pg_runs_results_history_audit);

/// One run's results by host, and runs' results added up per outcome (the
/// dashboard's runs page: one row per run, without reading host reports).
fn run_results_and_run_totals(open: Open) {
    let mut s = open();
    let (r1, r2) = (begin(&mut s, "apply"), begin(&mut s, "apply"));
    let mut slow = result(r2, "h3", Outcome::Failed, 40);
    (slow.bytes_sent, slow.duration_ms) = (7, 900);
    s.record_hosts(&[
        result(r1, "h1", Outcome::Changed, 10),
        result(r2, "h2", Outcome::Changed, 30),
        slow,
        result(r2, "h1", Outcome::Changed, 30),
    ])
    .unwrap();
    let hosts: Vec<_> = s.run_results(r2).unwrap().into_iter().map(|r| r.host).collect();
    assert_eq!(hosts, ["h1", "h2", "h3"]);
    assert_eq!(s.run_results(r2 + 1).unwrap(), vec![]);
    let totals = s.run_totals(r2).unwrap();
    let got: Vec<_> =
        totals.iter().map(|t| (t.run_id, t.outcome, t.hosts, t.changes, t.bytes_sent, t.max_duration_ms)).collect();
    assert_eq!(got, [(r2, Outcome::Changed, 2, 6, 200, 5), (r2, Outcome::Failed, 1, 3, 7, 900)]);
    assert_eq!(s.run_totals(r1).unwrap().len(), 3, "from run r1 on");
}
on_both!(run_results_and_run_totals: sqlite_run_results_and_totals, pg_run_results_and_totals);

fn latest_result_per_host_and_results_since(open: Open) {
    let mut s = open();
    let (r1, r2) = (begin(&mut s, "apply"), begin(&mut s, "apply"));
    s.record_hosts(&[
        result(r1, "h1", Outcome::Changed, 10),
        result(r1, "h2", Outcome::Failed, 10),
        result(r2, "h1", Outcome::Unchanged, 30),
        result(r2, "h3", Outcome::Changed, 40),
    ])
    .unwrap();
    let mut latest: Vec<_> = s.latest_per_host().unwrap().into_iter().map(|r| (r.host, r.outcome, r.run_id)).collect();
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        latest,
        [
            ("h1".into(), Outcome::Unchanged, r2),
            ("h2".into(), Outcome::Failed, r1),
            ("h3".into(), Outcome::Changed, r2)
        ]
    );
    let since: Vec<_> = s.results_since(10).unwrap().into_iter().map(|r| r.host).collect();
    assert_eq!(since, ["h3", "h1"], "newest first, strictly after");
}
on_both!(latest_result_per_host_and_results_since: sqlite_latest_and_since, pg_latest_and_since);

fn ten_thousand_results_in_one_call_and_a_rerecorded_host_keeps_the_last(open: Open) {
    let mut s = open();
    let id = begin(&mut s, "apply");
    let rows: Vec<_> = (0..10_000).map(|i| result(id, &format!("h{i:05}"), Outcome::Unchanged, i)).collect();
    s.record_hosts(&rows).unwrap();
    s.record_host(&result(id, "h00007", Outcome::Failed, 20_000)).unwrap();
    let all = s.history(None, 20_000).unwrap();
    assert_eq!(all.len(), 10_000);
    assert_eq!(all[0], result(id, "h00007", Outcome::Failed, 20_000));
    assert_eq!(all[1].host, "h09999");
}
on_both!(
    ten_thousand_results_in_one_call_and_a_rerecorded_host_keeps_the_last:
    sqlite_ten_thousand_results,
    pg_ten_thousand_results
);

fn drain_marks_and_facts(open: Open) {
    let mut s = open();
    s.set_drained("h3", Some("disk swap")).unwrap();
    s.set_drained("h3", Some("disk swap, again")).unwrap();
    assert_eq!(s.drained().unwrap().iter().map(|d| (&*d.0, &*d.2)).collect::<Vec<_>>(), [("h3", "disk swap, again")]);
    s.set_drained("h3", None).unwrap();
    assert!(s.drained().unwrap().is_empty());
    s.save_facts("h1", "{\"os\":\"debian\"}").unwrap();
    assert_eq!(s.facts("h1").unwrap().as_deref(), Some("{\"os\":\"debian\"}"));
    assert_eq!(s.facts("h2").unwrap(), None);
    s.save_facts("h0", "{}").unwrap();
    s.save_facts("h0", "{\"a\":1}").unwrap();
    assert_eq!(
        s.all_facts().unwrap(),
        vec![("h0".into(), "{\"a\":1}".into()), ("h1".into(), "{\"os\":\"debian\"}".into())]
    );
}
on_both!(drain_marks_and_facts: sqlite_drain_marks_and_facts, pg_drain_marks_and_facts);

fn open_alerts_are_replaced_as_a_set_and_survive_a_reopen(open: Open) {
    let alert = |rule: &str, subject: &str, since_ms, fired| OpenAlert {
        rule: rule.into(),
        subject: subject.into(),
        since_ms,
        fired,
    };
    assert_eq!(open().open_alerts().unwrap(), vec![]);
    let first = vec![alert("down", "h1", 10, true), alert("down", "h2", 20, false), alert("drift", "h1", 30, true)];
    open().set_open_alerts(&first).unwrap();
    assert_eq!(open().open_alerts().unwrap(), first, "read back whole, ordered by rule then subject, after a reopen");
    // The next pass: h1 recovered, h2 fired, a new alert opened.
    let second = vec![alert("down", "h2", 20, true), alert("unhealthy", "h3", 40, false)];
    open().set_open_alerts(&second).unwrap();
    assert_eq!(open().open_alerts().unwrap(), second, "the set is replaced, not merged");
    open().set_open_alerts(&[]).unwrap();
    assert_eq!(open().open_alerts().unwrap(), vec![]);
}
on_both!(open_alerts_are_replaced_as_a_set_and_survive_a_reopen: sqlite_open_alerts, pg_open_alerts);

fn rollouts_resume_with_their_revision_and_a_new_owner(open: Open) {
    let mut s = open();
    let id = s.create_rollout(Some(1), "{\"batches\":[[\"h1\"],[\"h2\"]]}", "inputs:abc").unwrap();
    s.update_rollout(id, 1, RolloutStatus::Paused).unwrap();
    let r = s.unfinished_rollout().unwrap().unwrap();
    assert_eq!((r.id, r.next_batch, r.run_id, r.revision.as_deref()), (id, 1, Some(1), Some("inputs:abc")));
    s.take_over_rollout(id, 7).unwrap();
    let r = s.rollout(id).unwrap().unwrap();
    assert_eq!((r.run_id, r.status, r.next_batch), (Some(7), RolloutStatus::Running, 1));
    s.advance_rollout(id, 2).unwrap();
    assert_eq!(s.rollout(id).unwrap().unwrap().status, RolloutStatus::Running, "advance leaves the status");
    s.update_rollout(id, 2, RolloutStatus::Done).unwrap();
    assert!(s.unfinished_rollout().unwrap().is_none());
    assert_eq!(s.rollouts(5).unwrap().len(), 1);
}
on_both!(rollouts_resume_with_their_revision_and_a_new_owner: sqlite_rollouts_resume, pg_rollouts_resume);

/// A history with one of everything, for the copy tests.
fn fill(s: &mut Store) {
    let r1 = begin(s, "apply");
    s.record_hosts(&[result(r1, "h1", Outcome::Changed, 10), result(r1, "h2", Outcome::Failed, 11)]).unwrap();
    s.finish_run(r1, RunStatus::Failed).unwrap();
    let r2 = begin(s, "apply");
    s.record_host(&result(r2, "h2", Outcome::Changed, 20)).unwrap();
    s.save_facts("h1", "{\"os\":\"debian\"}").unwrap();
    s.set_drained("h2", Some("disk")).unwrap();
    s.set_drained("h3", None).unwrap();
    let ro = s.create_rollout(Some(r2), "{}", "inputs:x").unwrap();
    s.update_rollout(ro, 1, RolloutStatus::Paused).unwrap();
    s.audit(&AuditEntry {
        at_ms: 5,
        user: "u".into(),
        command: "exec".into(),
        args: "all -- uptime".into(),
        project_rev: "r".into(),
        run_id: None,
    })
    .unwrap();
}

fn copied_history_is_whole_and_new_rows_follow_it(open: Open) {
    let d = tempfile::tempdir().unwrap();
    let mut src = Store::open(&d.path().join("src.db")).unwrap();
    fill(&mut src);
    let mut dst = open();
    let n = copy(&src, &mut dst).unwrap();
    assert_eq!((n.runs, n.results, n.audit, n.facts, n.drained, n.rollouts), (2, 3, 3, 1, 1, 1));
    assert_eq!(dst.export().unwrap(), src.export().unwrap());
    // New ids continue after the copied ones.
    let r3 = begin(&mut dst, "apply");
    assert_eq!(r3, 3);
    assert_eq!(dst.create_rollout(Some(r3), "{}", "x").unwrap(), 2);
    // A second copy into a store with runs is refused, changing nothing.
    let e = copy(&src, &mut dst).unwrap_err().to_string();
    assert!(e.contains("already has runs") && e.contains("empty database"), "{e}");
    assert_eq!(dst.runs(10).unwrap().len(), 3);
}
on_both!(copied_history_is_whole_and_new_rows_follow_it: sqlite_copy_whole, pg_copy_whole);

/// A row holding a state this drover does not know (a newer one wrote it)
/// fails the read with an error naming it; it neither panics nor guesses.
fn unknown_states_are_refused_naming_them(open: Open, raw: &dyn Fn(&str)) {
    let mut s = open();
    let id = begin(&mut s, "apply");
    s.record_host(&result(id, "h1", Outcome::Changed, 10)).unwrap();
    s.create_rollout(Some(id), "{}", "x").unwrap();
    raw("UPDATE host_results SET outcome = 'exploded'");
    raw("UPDATE runs SET status = 'thinking'");
    raw("UPDATE rollouts SET status = 'dancing'");
    let e = s.history(None, 10).unwrap_err();
    assert!(matches!(e, StateError::Unknown(_)), "{e:?}");
    assert!(e.to_string().contains("unknown outcome \"exploded\""), "{e}");
    let e = s.runs(10).unwrap_err().to_string();
    assert!(e.contains("unknown run status \"thinking\""), "{e}");
    let e = s.rollouts(10).unwrap_err().to_string();
    assert!(e.contains("unknown rollout status \"dancing\""), "{e}");
}

#[test]
fn sqlite_unknown_states() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(".drover/state.db");
    unknown_states_are_refused_naming_them(&|| Store::open(&path).unwrap(), &|sql| {
        rusqlite::Connection::open(&path).unwrap().execute(sql, []).unwrap();
    })
}

#[test]
fn pg_unknown_states() {
    let url = drover_pgtest::shared().fresh_db();
    unknown_states_are_refused_naming_them(&|| Store::connect(&url).unwrap(), &|sql| {
        postgres::Client::connect(&url, postgres::NoTls).unwrap().execute(sql, &[]).unwrap();
    })
}
