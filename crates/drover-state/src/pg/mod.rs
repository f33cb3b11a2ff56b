//! The PostgreSQL backend: one database shared by every controller of a
//! team (operators, CI, `drover serve`), on any number of machines.

mod conn;
mod jobs;
mod locks;
mod migrations;
mod records;
mod rollouts;
mod runs;

use std::time::Duration;

pub(crate) use locks::Lease;

use crate::backend::Backend;
use crate::{
    AuditEntry, Claim, HostLock, HostResult, JobRow, NewRun, OpenAlert, Rollout, RolloutStatus, RunRow, RunStatus,
    Snapshot, StateError,
};
use conn::Conn;

/// The stored states (see `crate::states`) are TEXT columns: parsed when
/// read (unknown text fails the read, naming it), written as `as_str()`.
macro_rules! text_column {
    ($t:ty) => {
        impl<'a> postgres::types::FromSql<'a> for $t {
            fn from_sql(
                ty: &postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<$t, Box<dyn std::error::Error + Sync + Send>> {
                Ok(<&str as postgres::types::FromSql>::from_sql(ty, raw)?.parse::<$t>()?)
            }
            fn accepts(ty: &postgres::types::Type) -> bool {
                <&str as postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}
crate::states::for_each_state!(text_column);

pub(crate) struct Pg {
    conn: Conn,
    lease: Duration,
}

impl Pg {
    pub(crate) fn connect(url: &str) -> Result<Pg, StateError> {
        let conn = Conn::open(url)?;
        let shown = conn.url.to_string();
        conn.call(move |c| migrations::run(c, &shown))?;
        Ok(Pg { conn, lease: crate::DEFAULT_LEASE })
    }

    fn export_all(&self) -> Result<Snapshot, StateError> {
        self.conn.call(|c| {
            let mut tx = c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).start()?;
            let runs = tx
                .query(&format!("SELECT {}, pid FROM runs ORDER BY id", records::RUN_COLUMNS), &[])?
                .iter()
                .map(|r| Ok((records::row_to_run(r)?, u32::try_from(r.get::<_, i64>(10)).unwrap_or(0))))
                .collect::<Result<_, postgres::Error>>()?;
            let sql = format!("SELECT {} FROM host_results ORDER BY run_id, host", records::RESULT_COLUMNS);
            let results = tx.query(&sql, &[])?.iter().map(records::row_to_result).collect::<Result<_, _>>()?;
            let audit = tx
                .query(r#"SELECT id, at_ms, "user", command, args, project_rev, run_id FROM audit ORDER BY id"#, &[])?
                .iter()
                .map(|r| (r.get(0), records::row_to_audit(r, 1)))
                .collect();
            let facts = tx
                .query("SELECT host, facts, updated_ms FROM facts ORDER BY host", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let drained = tx
                .query("SELECT host, since_ms, reason FROM drained ORDER BY host", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let sql = format!("SELECT {} FROM rollouts ORDER BY id", rollouts::COLUMNS);
            let rollouts = tx.query(&sql, &[])?.iter().map(rollouts::row_to_rollout).collect::<Result<_, _>>()?;
            tx.commit()?;
            Ok(Snapshot { runs, results, audit, facts, drained, rollouts })
        })
    }

    fn import_all(&mut self, s: &Snapshot) -> Result<(), StateError> {
        let s = s.clone();
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            for (r, pid) in &s.runs {
                tx.execute(
                    r#"INSERT INTO runs (id, command, args, "user", project_rev, pid, started_ms, finished_ms, status,
                       owner, lease_expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#,
                    &[
                        &r.id,
                        &r.command,
                        &r.args,
                        &r.user,
                        &r.project_rev,
                        &i64::from(*pid),
                        &r.started_ms,
                        &r.finished_ms,
                        &r.status.as_str(),
                        &r.owner,
                        &r.lease_expires_ms,
                    ],
                )?;
            }
            records::insert_results(&mut tx, &s.results)?;
            for (id, e) in &s.audit {
                tx.execute(
                    r#"INSERT INTO audit (id, at_ms, "user", command, args, project_rev, run_id)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
                    &[id, &e.at_ms, &e.user, &e.command, &e.args, &e.project_rev, &e.run_id],
                )?;
            }
            for (h, f, at) in &s.facts {
                tx.execute("INSERT INTO facts (host, facts, updated_ms) VALUES ($1, $2, $3)", &[h, f, at])?;
            }
            for (h, since, reason) in &s.drained {
                tx.execute("INSERT INTO drained (host, since_ms, reason) VALUES ($1, $2, $3)", &[h, since, reason])?;
            }
            for r in &s.rollouts {
                tx.execute(
                    "INSERT INTO rollouts (id, run_id, plan, next_batch, status, updated_ms, revision)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&r.id, &r.run_id, &r.plan, &r.next_batch, &r.status.as_str(), &r.updated_ms, &r.revision],
                )?;
            }
            // Rows came with their ids: new ones must start after them.
            for t in ["runs", "audit", "rollouts"] {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false)"
                    ),
                    &[],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

impl Backend for Pg {
    fn describe(&self) -> String {
        self.conn.url.to_string()
    }
    fn set_lock_lease(&mut self, lease: Duration) {
        self.lease = lease.max(Duration::from_millis(300));
    }
    fn schema_version(&self) -> Result<u32, StateError> {
        self.conn.call(migrations::version)
    }
    fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError> {
        Pg::begin_run(self, r)
    }
    fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError> {
        Pg::run_pid(self, run_id)
    }
    fn finish_run(&mut self, id: i64, status: RunStatus) -> Result<(), StateError> {
        Pg::finish_run(self, id, status)
    }
    fn heartbeat(&mut self, id: i64) -> Result<bool, StateError> {
        Pg::heartbeat(self, id)
    }
    fn mark_abandoned(&mut self) -> Result<Vec<i64>, StateError> {
        self.mark_abandoned_now()
    }
    fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        Pg::run(self, id)
    }
    fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError> {
        Pg::audit(self, e)
    }
    fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        Pg::audit_log(self, limit)
    }
    fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError> {
        Pg::record_hosts(self, hs)
    }
    fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        Pg::runs(self, limit)
    }
    fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError> {
        Pg::history(self, host, limit)
    }
    fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError> {
        Pg::latest_per_host(self)
    }
    fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError> {
        Pg::results_since(self, at_ms)
    }
    fn run_results(&self, run_id: i64) -> Result<Vec<HostResult>, StateError> {
        Pg::run_results(self, run_id)
    }
    fn run_totals(&self, from_run: i64) -> Result<Vec<crate::RunTotal>, StateError> {
        Pg::run_totals(self, from_run)
    }
    fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError> {
        Pg::save_facts(self, host, facts_json)
    }
    fn facts(&self, host: &str) -> Result<Option<String>, StateError> {
        Pg::facts(self, host)
    }
    fn all_facts(&self) -> Result<Vec<(String, String)>, StateError> {
        Pg::all_facts(self)
    }
    fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError> {
        Pg::set_drained(self, host, reason)
    }
    fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError> {
        Pg::drained(self)
    }
    fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError> {
        Pg::open_alerts(self)
    }
    fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError> {
        Pg::set_open_alerts(self, alerts)
    }
    fn lock_hosts(&mut self, run_id: i64, hosts: &[String]) -> Result<HostLock, StateError> {
        Pg::lock_hosts(self, run_id, hosts)
    }
    fn unlock_hosts(&mut self, lock: HostLock) -> Result<(), StateError> {
        Pg::unlock_hosts(self, lock)
    }
    fn create_rollout(&mut self, run_id: Option<i64>, plan: &str, revision: &str) -> Result<i64, StateError> {
        Pg::create_rollout(self, run_id, plan, revision)
    }
    fn update_rollout(&mut self, id: i64, next_batch: i64, status: RolloutStatus) -> Result<(), StateError> {
        Pg::update_rollout(self, id, next_batch, status)
    }
    fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError> {
        Pg::take_over_rollout(self, id, run_id)
    }
    fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError> {
        Pg::advance_rollout(self, id, next_batch)
    }
    fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError> {
        Pg::rollout(self, id)
    }
    fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        Pg::rollouts(self, limit)
    }
    fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError> {
        Pg::unfinished_rollout(self)
    }
    fn export(&self) -> Result<Snapshot, StateError> {
        self.export_all()
    }
    fn import(&mut self, s: &Snapshot) -> Result<(), StateError> {
        self.import_all(s)
    }
    fn create_jobs(&mut self, run_id: i64, spec: &str, hosts: &[String]) -> Result<(), StateError> {
        Pg::create_jobs(self, run_id, spec, hosts)
    }
    fn claim_jobs(&mut self, worker: &str, limit: i64, lease: Duration) -> Result<Option<Claim>, StateError> {
        Pg::claim_jobs(self, worker, limit, lease)
    }
    fn renew_jobs(&mut self, worker: &str, lease: Duration) -> Result<u64, StateError> {
        Pg::renew_jobs(self, worker, lease)
    }
    fn finish_jobs(&mut self, worker: &str, results: &[HostResult]) -> Result<u64, StateError> {
        Pg::finish_jobs(self, worker, results)
    }
    fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>, StateError> {
        Pg::jobs(self, run_id)
    }
    fn unfinished_jobs(&self) -> Result<i64, StateError> {
        Pg::unfinished_jobs(self)
    }
}
