//! SQLite schema migrations, in order. Never edit a released one: append.
//! `PRAGMA user_version` says how many have run.

use rusqlite::Connection;

use crate::StateError;

const MIGRATIONS: &[&str] = &[
    // 1: runs, per-host results, locks, facts, drain marks, rollouts, audit.
    r"
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        user TEXT NOT NULL,
        project_rev TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        status TEXT NOT NULL DEFAULT 'running'
    );
    CREATE TABLE host_results (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        host TEXT NOT NULL,
        outcome TEXT NOT NULL,
        generation INTEGER,
        changes INTEGER NOT NULL,
        bytes_sent INTEGER NOT NULL,
        files_written INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        error TEXT,
        detail TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, host)
    );
    CREATE INDEX host_results_by_host ON host_results(host, run_id);
    CREATE TABLE host_locks (
        host TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        since_ms INTEGER NOT NULL
    );
    CREATE TABLE facts (host TEXT PRIMARY KEY, facts TEXT NOT NULL, updated_ms INTEGER NOT NULL);
    CREATE TABLE drained (host TEXT PRIMARY KEY, since_ms INTEGER NOT NULL, reason TEXT);
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        plan TEXT NOT NULL,
        next_batch INTEGER NOT NULL,
        status TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        user TEXT NOT NULL,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        project_rev TEXT NOT NULL,
        run_id INTEGER
    );
    ",
    // 2: the project revision a rollout started from (resume refuses another).
    r"
    ALTER TABLE rollouts ADD COLUMN revision TEXT;
    ",
    // 3: the lock holder's machine, named when a lock refuses.
    r"
    ALTER TABLE host_locks ADD COLUMN machine TEXT NOT NULL DEFAULT '';
    ",
    // 4: the alerts `drover serve` has open (kept across its restarts).
    r"
    CREATE TABLE open_alerts (
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        fired INTEGER NOT NULL,
        PRIMARY KEY (rule, subject)
    );
    ",
    // 5: runs split across workers (the same tables as PostgreSQL's 2).
    r"
    CREATE TABLE job_runs (run_id INTEGER PRIMARY KEY REFERENCES runs(id), spec TEXT NOT NULL);
    CREATE TABLE jobs (
        run_id INTEGER NOT NULL REFERENCES job_runs(run_id),
        host TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        claimed_by TEXT,
        claims INTEGER NOT NULL DEFAULT 0,
        claimed_before TEXT,
        lease_expires_ms INTEGER,
        outcome TEXT,
        PRIMARY KEY (run_id, host)
    );
    ",
    // 6: a run's owner (machine:pid) and the lease its heartbeat renews: a
    // run whose lease expired while `running` is marked `abandoned` by the
    // next run (a pid alone means nothing on another machine).
    r"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_expires_ms INTEGER;
    ",
];

pub(super) fn run(conn: &mut Connection, path: &str) -> Result<(), StateError> {
    let have: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
    if have > known {
        return Err(StateError::TooNew { path: path.to_string(), found: have, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
