//! PostgreSQL schema migrations, in order. Never edit a released one:
//! append. The `schema_version` table says how many have run; a session
//! advisory lock keeps two controllers starting at once from both
//! migrating.

use postgres::Client;

use super::conn::Fail;
use crate::StateError;

/// Advisory lock keys of drover's (an arbitrary constant per purpose).
pub(super) const MIGRATE_KEY: i64 = 0x6472_6f76_0001;
pub(super) const LOCKS_KEY: i64 = 0x6472_6f76_0002;

const MIGRATIONS: &[&str] = &[
    // 1: the SQLite schema's concepts (its migrations 1-3), with leases on
    // host locks and the machine of each run.
    r#"
    CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        "user" TEXT NOT NULL,
        project_rev TEXT NOT NULL,
        pid BIGINT NOT NULL,
        machine TEXT NOT NULL DEFAULT '',
        started_ms BIGINT NOT NULL,
        finished_ms BIGINT,
        status TEXT NOT NULL DEFAULT 'running'
    );
    CREATE TABLE host_results (
        run_id BIGINT NOT NULL REFERENCES runs(id),
        host TEXT NOT NULL,
        outcome TEXT NOT NULL,
        generation BIGINT,
        changes BIGINT NOT NULL,
        bytes_sent BIGINT NOT NULL,
        files_written BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        error TEXT,
        detail TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (run_id, host)
    );
    CREATE INDEX host_results_by_host ON host_results(host, run_id);
    CREATE INDEX host_results_by_time ON host_results(at_ms);
    CREATE TABLE host_locks (
        host TEXT PRIMARY KEY,
        run_id BIGINT NOT NULL,
        pid BIGINT NOT NULL,
        machine TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE TABLE facts (host TEXT PRIMARY KEY, facts TEXT NOT NULL, updated_ms BIGINT NOT NULL);
    CREATE TABLE drained (host TEXT PRIMARY KEY, since_ms BIGINT NOT NULL, reason TEXT);
    CREATE TABLE rollouts (
        id BIGSERIAL PRIMARY KEY,
        run_id BIGINT,
        plan TEXT NOT NULL,
        next_batch BIGINT NOT NULL,
        status TEXT NOT NULL,
        updated_ms BIGINT NOT NULL,
        revision TEXT
    );
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        "user" TEXT NOT NULL,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        project_rev TEXT NOT NULL,
        run_id BIGINT
    );
    "#,
    // 2: runs split across workers: one job per host, claimed with a lease.
    r#"
    CREATE TABLE job_runs (run_id BIGINT PRIMARY KEY REFERENCES runs(id), spec TEXT NOT NULL);
    CREATE TABLE jobs (
        run_id BIGINT NOT NULL REFERENCES job_runs(run_id),
        host TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        claimed_by TEXT,
        claims BIGINT NOT NULL DEFAULT 0,
        claimed_before TEXT,
        lease_expires_ms BIGINT,
        outcome TEXT,
        PRIMARY KEY (run_id, host)
    );
    CREATE INDEX jobs_open ON jobs(run_id) WHERE state <> 'done';
    "#,
    // 3: the alerts `drover serve` has open (kept across its restarts).
    r#"
    CREATE TABLE open_alerts (
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        fired BOOLEAN NOT NULL,
        PRIMARY KEY (rule, subject)
    );
    "#,
    // 4: a run's owner (machine:pid) and the lease its heartbeat renews (as
    // SQLite's 6): a run whose lease expired while `running` is marked
    // `abandoned` by the next run.
    r#"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_expires_ms BIGINT;
    CREATE INDEX runs_running ON runs(lease_expires_ms) WHERE status = 'running';
    "#,
];

pub(super) fn known() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

pub(super) fn version(c: &mut Client) -> Result<u32, Fail> {
    let v: Option<i32> = c.query_opt("SELECT MAX(version) FROM schema_version", &[])?.and_then(|r| r.get(0));
    Ok(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0))
}

pub(super) fn run(c: &mut Client, url: &str) -> Result<(), Fail> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_KEY])?;
    let r = migrate(c, url);
    c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_KEY])?;
    r
}

fn migrate(c: &mut Client, url: &str) -> Result<(), Fail> {
    c.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let have = version(c)?;
    let known = known();
    if have > known {
        return Err(StateError::TooNew { path: url.to_string(), found: have, known }.into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let mut tx = c.transaction()?;
        tx.batch_execute(sql)?;
        let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&v])?;
        tx.commit()?;
    }
    Ok(())
}
