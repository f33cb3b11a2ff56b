//! Runs, per-host results, facts, drain marks and the audit log (SQLite).

use rusqlite::{params, OptionalExtension};

use super::Sqlite;
use crate::{now_ms, AuditEntry, HostResult, NewRun, OpenAlert, RunRow, RunStatus, StateError};

impl Sqlite {
    /// Record the start of a run (and its audit entry) and return its id.
    pub(super) fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        super::runs::mark_abandoned(&tx, now)?;
        let lease = now + crate::lease_ms(self.lease);
        tx.execute(
            "INSERT INTO runs (command, args, user, project_rev, pid, started_ms, owner, lease_expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![r.command, r.args, r.user, r.project_rev, std::process::id(), now, crate::owner(), lease],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO audit (at_ms, user, command, args, project_rev, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now, r.user, r.command, r.args, r.project_rev, id],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The pid of the controller that ran `run_id`.
    pub(super) fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError> {
        Ok(self.conn.query_row("SELECT pid FROM runs WHERE id = ?1", [run_id], |r| r.get(0)).optional()?)
    }

    pub(super) fn finish_run(&mut self, id: i64, status: RunStatus) -> Result<(), StateError> {
        self.conn
            .execute("UPDATE runs SET finished_ms = ?1, status = ?2 WHERE id = ?3", params![now_ms(), status, id])?;
        Ok(())
    }

    /// Record a command that is not a run (drain, exec…) in the audit log.
    pub(super) fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO audit (at_ms, user, command, args, project_rev, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![e.at_ms, e.user, e.command, e.args, e.project_rev, e.run_id],
        )?;
        Ok(())
    }

    pub(super) fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT at_ms, user, command, args, project_rev, run_id FROM audit ORDER BY id DESC LIMIT ?1")?;
        let rows = st.query_map([limit], |r| {
            Ok(AuditEntry {
                at_ms: r.get(0)?,
                user: r.get(1)?,
                command: r.get(2)?,
                args: r.get(3)?,
                project_rev: r.get(4)?,
                run_id: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Many hosts' results in one transaction (a run's summary: one commit,
    /// not one per host, however large the fleet).
    pub(super) fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        insert_results(&tx, hs)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        let mut st = self.conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?1"))?;
        let rows = st.query_map([limit], row_to_run)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per-host results, newest first; all hosts when `host` is `None`.
    pub(super) fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError> {
        self.results(
            "WHERE ?1 IS NULL OR host = ?1 ORDER BY at_ms DESC, run_id DESC, host DESC LIMIT ?2",
            params![host, limit],
        )
    }

    /// Each host's newest result, in one query (`drover serve` colours
    /// 10,000 hosts by it every pass); on a tie in time, the later run's
    /// row comes last.
    pub(super) fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError> {
        self.results(
            "WHERE (host, at_ms) IN (SELECT host, MAX(at_ms) FROM host_results GROUP BY host) ORDER BY run_id",
            params![],
        )
    }

    /// Results recorded after `at_ms`, newest first.
    pub(super) fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError> {
        self.results("WHERE at_ms > ?1 ORDER BY at_ms DESC, run_id DESC, host DESC", params![at_ms])
    }

    pub(super) fn run_results(&self, run_id: i64) -> Result<Vec<HostResult>, StateError> {
        self.results("WHERE run_id = ?1 ORDER BY host", params![run_id])
    }

    pub(super) fn run_totals(&self, from_run: i64) -> Result<Vec<crate::RunTotal>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT run_id, outcome, COUNT(*), SUM(changes), SUM(bytes_sent), MAX(duration_ms) FROM host_results
             WHERE run_id >= ?1 GROUP BY run_id, outcome ORDER BY run_id, outcome",
        )?;
        let rows = st.query_map([from_run], |r| {
            Ok(crate::RunTotal {
                run_id: r.get(0)?,
                outcome: r.get(1)?,
                hosts: r.get(2)?,
                changes: r.get(3)?,
                bytes_sent: r.get(4)?,
                max_duration_ms: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn results(&self, tail: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<HostResult>, StateError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT run_id, host, outcome, generation, changes, bytes_sent, files_written, duration_ms, error, detail, at_ms
             FROM host_results {tail}"
        ))?;
        let rows = st.query_map(args, |r| {
            Ok(HostResult {
                run_id: r.get(0)?,
                host: r.get(1)?,
                outcome: r.get(2)?,
                generation: r.get(3)?,
                changes: r.get(4)?,
                bytes_sent: r.get(5)?,
                files_written: r.get(6)?,
                duration_ms: r.get(7)?,
                error: r.get(8)?,
                detail: r.get(9)?,
                at_ms: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO facts (host, facts, updated_ms) VALUES (?1, ?2, ?3)",
            params![host, facts_json, now_ms()],
        )?;
        Ok(())
    }

    pub(super) fn facts(&self, host: &str) -> Result<Option<String>, StateError> {
        Ok(self.conn.query_row("SELECT facts FROM facts WHERE host = ?1", [host], |r| r.get(0)).optional()?)
    }

    /// Every host's cached facts (JSON), for templates that read other
    /// hosts' facts: one query for the whole fleet, not one per host.
    pub(super) fn all_facts(&self) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self.conn.prepare("SELECT host, facts FROM facts ORDER BY host")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Mark (reason `Some`) or unmark (`None`) a host as drained.
    pub(super) fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError> {
        match reason {
            Some(r) => self.conn.execute(
                "INSERT OR REPLACE INTO drained (host, since_ms, reason) VALUES (?1, ?2, ?3)",
                params![host, now_ms(), r],
            )?,
            None => self.conn.execute("DELETE FROM drained WHERE host = ?1", [host])?,
        };
        Ok(())
    }

    /// Drained hosts with since (ms) and reason.
    pub(super) fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError> {
        let mut st = self.conn.prepare("SELECT host, since_ms, COALESCE(reason, '') FROM drained ORDER BY host")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError> {
        let mut st =
            self.conn.prepare("SELECT rule, subject, since_ms, fired FROM open_alerts ORDER BY rule, subject")?;
        let rows = st.query_map([], |r| {
            Ok(OpenAlert { rule: r.get(0)?, subject: r.get(1)?, since_ms: r.get(2)?, fired: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replace the whole set, in one transaction (it is small: one row per
    /// rule and subject whose condition holds).
    pub(super) fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM open_alerts", [])?;
        {
            let mut st =
                tx.prepare("INSERT INTO open_alerts (rule, subject, since_ms, fired) VALUES (?1, ?2, ?3, ?4)")?;
            for a in alerts {
                st.execute(params![a.rule, a.subject, a.since_ms, a.fired])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Write host results inside the caller's transaction: a run's summary
/// ([`Sqlite::record_hosts`]) and a copied history (`import_all`, into an
/// empty store) share the one statement.
pub(super) fn insert_results(tx: &rusqlite::Transaction<'_>, hs: &[HostResult]) -> Result<(), StateError> {
    let mut st = tx.prepare_cached(
        "INSERT OR REPLACE INTO host_results
         (run_id, host, outcome, generation, changes, bytes_sent, files_written, duration_ms, error, detail, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for h in hs {
        st.execute(params![
            h.run_id,
            h.host,
            h.outcome,
            h.generation,
            h.changes,
            h.bytes_sent,
            h.files_written,
            h.duration_ms,
            h.error,
            h.detail,
            h.at_ms
        ])?;
    }
    Ok(())
}

/// The columns [`row_to_run`] reads, in its order.
pub(super) const RUN_COLUMNS: &str =
    "id, command, args, user, project_rev, started_ms, finished_ms, status, owner, lease_expires_ms";

pub(super) fn row_to_run(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        command: r.get(1)?,
        args: r.get(2)?,
        user: r.get(3)?,
        project_rev: r.get(4)?,
        started_ms: r.get(5)?,
        finished_ms: r.get(6)?,
        status: r.get(7)?,
        owner: r.get(8)?,
        lease_expires_ms: r.get(9)?,
    })
}
