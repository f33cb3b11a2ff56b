//! The SQLite backend: one file per project (`.drover/state.db`), WAL mode.

mod jobs;
mod locks;
mod migrations;
mod records;
mod rollouts;
mod runs;

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::backend::Backend;
use crate::{
    AuditEntry, Claim, HostLock, HostResult, JobRow, NewRun, OpenAlert, Rollout, RolloutStatus, RunRow, RunStatus,
    Snapshot, StateError,
};

/// The stored states (see `crate::states`) are TEXT columns: bound as their
/// text, and parsed when read (unknown text fails the read, naming it).
macro_rules! text_column {
    ($t:ty) => {
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<$t> {
                v.as_str()?.parse().map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
crate::states::for_each_state!(text_column);

pub(crate) struct Sqlite {
    conn: Connection,
    path: String,
    /// How long a run of this process stays owned without a heartbeat.
    lease: Duration,
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Sqlite, StateError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Open {
                path: p.clone(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StateError::Open { path: p.clone(), source })?;
        // WAL: readers (status) never block the writer (apply); a busy
        // timeout instead of immediate SQLITE_BUSY between two controllers.
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "normal")?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mut s = Sqlite { conn, path: p, lease: crate::DEFAULT_LEASE };
        migrations::run(&mut s.conn, &s.path)?;
        Ok(s)
    }

    fn export_all(&self) -> Result<Snapshot, StateError> {
        let c = &self.conn;
        let mut s = Snapshot::default();
        let mut st = c.prepare(&format!("SELECT {}, pid FROM runs ORDER BY id", records::RUN_COLUMNS))?;
        s.runs = st.query_map([], |r| Ok((records::row_to_run(r)?, r.get(10)?)))?.collect::<Result<_, _>>()?;
        s.results = self.results("ORDER BY run_id, host", params![])?;
        let mut st = c.prepare("SELECT id, at_ms, user, command, args, project_rev, run_id FROM audit ORDER BY id")?;
        s.audit = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    AuditEntry {
                        at_ms: r.get(1)?,
                        user: r.get(2)?,
                        command: r.get(3)?,
                        args: r.get(4)?,
                        project_rev: r.get(5)?,
                        run_id: r.get(6)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut st = c.prepare("SELECT host, facts, updated_ms FROM facts ORDER BY host")?;
        s.facts = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut st = c.prepare("SELECT host, since_ms, reason FROM drained ORDER BY host")?;
        s.drained = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut st = c.prepare(&format!("SELECT {} FROM rollouts ORDER BY id", rollouts::COLUMNS))?;
        s.rollouts = st.query_map([], rollouts::row_to_rollout)?.collect::<Result<_, _>>()?;
        Ok(s)
    }

    fn import_all(&mut self, s: &Snapshot) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        for (r, pid) in &s.runs {
            tx.execute(
                "INSERT INTO runs (id, command, args, user, project_rev, pid, started_ms, finished_ms, status,
                 owner, lease_expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.id,
                    r.command,
                    r.args,
                    r.user,
                    r.project_rev,
                    pid,
                    r.started_ms,
                    r.finished_ms,
                    r.status,
                    r.owner,
                    r.lease_expires_ms
                ],
            )?;
        }
        records::insert_results(&tx, &s.results)?;
        for (id, e) in &s.audit {
            tx.execute(
                "INSERT INTO audit (id, at_ms, user, command, args, project_rev, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, e.at_ms, e.user, e.command, e.args, e.project_rev, e.run_id],
            )?;
        }
        for (h, f, at) in &s.facts {
            tx.execute("INSERT INTO facts (host, facts, updated_ms) VALUES (?1, ?2, ?3)", params![h, f, at])?;
        }
        for (h, since, reason) in &s.drained {
            tx.execute("INSERT INTO drained (host, since_ms, reason) VALUES (?1, ?2, ?3)", params![h, since, reason])?;
        }
        for r in &s.rollouts {
            tx.execute(
                "INSERT INTO rollouts (id, run_id, plan, next_batch, status, updated_ms, revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.id, r.run_id, r.plan, r.next_batch, r.status, r.updated_ms, r.revision],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        self.path.clone()
    }
    fn set_lock_lease(&mut self, lease: Duration) {
        self.lease = lease.max(Duration::from_millis(300));
    }
    fn schema_version(&self) -> Result<u32, StateError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
    fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError> {
        Sqlite::begin_run(self, r)
    }
    fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError> {
        Sqlite::run_pid(self, run_id)
    }
    fn finish_run(&mut self, id: i64, status: RunStatus) -> Result<(), StateError> {
        Sqlite::finish_run(self, id, status)
    }
    fn heartbeat(&mut self, id: i64) -> Result<bool, StateError> {
        Sqlite::heartbeat(self, id)
    }
    fn mark_abandoned(&mut self) -> Result<Vec<i64>, StateError> {
        self.mark_abandoned_now()
    }
    fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        Sqlite::run(self, id)
    }
    fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError> {
        Sqlite::audit(self, e)
    }
    fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        Sqlite::audit_log(self, limit)
    }
    fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError> {
        Sqlite::record_hosts(self, hs)
    }
    fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        Sqlite::runs(self, limit)
    }
    fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError> {
        Sqlite::history(self, host, limit)
    }
    fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError> {
        Sqlite::latest_per_host(self)
    }
    fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError> {
        Sqlite::results_since(self, at_ms)
    }
    fn run_results(&self, run_id: i64) -> Result<Vec<HostResult>, StateError> {
        Sqlite::run_results(self, run_id)
    }
    fn run_totals(&self, from_run: i64) -> Result<Vec<crate::RunTotal>, StateError> {
        Sqlite::run_totals(self, from_run)
    }
    fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError> {
        Sqlite::save_facts(self, host, facts_json)
    }
    fn facts(&self, host: &str) -> Result<Option<String>, StateError> {
        Sqlite::facts(self, host)
    }
    fn all_facts(&self) -> Result<Vec<(String, String)>, StateError> {
        Sqlite::all_facts(self)
    }
    fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError> {
        Sqlite::set_drained(self, host, reason)
    }
    fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError> {
        Sqlite::drained(self)
    }
    fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError> {
        Sqlite::open_alerts(self)
    }
    fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError> {
        Sqlite::set_open_alerts(self, alerts)
    }
    fn lock_hosts(&mut self, run_id: i64, hosts: &[String]) -> Result<HostLock, StateError> {
        Sqlite::lock_hosts(self, run_id, hosts)
    }
    fn unlock_hosts(&mut self, lock: HostLock) -> Result<(), StateError> {
        Sqlite::unlock_hosts(self, lock)
    }
    fn create_rollout(&mut self, run_id: Option<i64>, plan: &str, revision: &str) -> Result<i64, StateError> {
        Sqlite::create_rollout(self, run_id, plan, revision)
    }
    fn update_rollout(&mut self, id: i64, next_batch: i64, status: RolloutStatus) -> Result<(), StateError> {
        Sqlite::update_rollout(self, id, next_batch, status)
    }
    fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError> {
        Sqlite::take_over_rollout(self, id, run_id)
    }
    fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError> {
        Sqlite::advance_rollout(self, id, next_batch)
    }
    fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError> {
        Sqlite::rollout(self, id)
    }
    fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        Sqlite::rollouts(self, limit)
    }
    fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError> {
        Sqlite::unfinished_rollout(self)
    }
    fn export(&self) -> Result<Snapshot, StateError> {
        self.export_all()
    }
    fn import(&mut self, s: &Snapshot) -> Result<(), StateError> {
        self.import_all(s)
    }
    fn create_jobs(&mut self, run_id: i64, spec: &str, hosts: &[String]) -> Result<(), StateError> {
        Sqlite::create_jobs(self, run_id, spec, hosts)
    }
    fn claim_jobs(&mut self, worker: &str, limit: i64, lease: Duration) -> Result<Option<Claim>, StateError> {
        Sqlite::claim_jobs(self, worker, limit, lease)
    }
    fn renew_jobs(&mut self, worker: &str, lease: Duration) -> Result<u64, StateError> {
        Sqlite::renew_jobs(self, worker, lease)
    }
    fn finish_jobs(&mut self, worker: &str, results: &[HostResult]) -> Result<u64, StateError> {
        Sqlite::finish_jobs(self, worker, results)
    }
    fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>, StateError> {
        Sqlite::jobs(self, run_id)
    }
    fn unfinished_jobs(&self) -> Result<i64, StateError> {
        Sqlite::unfinished_jobs(self)
    }
}
