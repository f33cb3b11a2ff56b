//! Runs, per-host results, facts, drain marks and the audit log.

use rusqlite::{params, OptionalExtension};

use crate::{now_ms, StateError, Store};

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub command: String,
    pub args: String,
    pub user: String,
    pub project_rev: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub command: String,
    pub args: String,
    pub user: String,
    pub project_rev: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub status: String,
}

/// One host's outcome in one run. `detail` is the full report as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResult {
    pub run_id: i64,
    pub host: String,
    pub outcome: String,
    pub generation: Option<i64>,
    pub changes: i64,
    pub bytes_sent: i64,
    pub files_written: i64,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub detail: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub user: String,
    pub command: String,
    pub args: String,
    pub project_rev: String,
    pub run_id: Option<i64>,
}

impl Store {
    /// Record the start of a run (and its audit entry) and return its id.
    pub fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO runs (command, args, user, project_rev, pid, started_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.command, r.args, r.user, r.project_rev, std::process::id(), now],
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
    pub fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError> {
        Ok(self.conn.query_row("SELECT pid FROM runs WHERE id = ?1", [run_id], |r| r.get(0)).optional()?)
    }

    pub fn finish_run(&mut self, id: i64, status: &str) -> Result<(), StateError> {
        self.conn
            .execute("UPDATE runs SET finished_ms = ?1, status = ?2 WHERE id = ?3", params![now_ms(), status, id])?;
        Ok(())
    }

    /// Record a command that is not a run (drain, exec…) in the audit log.
    pub fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO audit (at_ms, user, command, args, project_rev, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![e.at_ms, e.user, e.command, e.args, e.project_rev, e.run_id],
        )?;
        Ok(())
    }

    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
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

    pub fn record_host(&mut self, h: &HostResult) -> Result<(), StateError> {
        self.record_hosts(std::slice::from_ref(h))
    }

    /// Many hosts' results in one transaction (a run's summary: one commit,
    /// not one per host, however large the fleet).
    pub fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        {
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
        }
        tx.commit()?;
        Ok(())
    }

    pub fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT id, command, args, user, project_rev, started_ms, finished_ms, status FROM runs ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                command: r.get(1)?,
                args: r.get(2)?,
                user: r.get(3)?,
                project_rev: r.get(4)?,
                started_ms: r.get(5)?,
                finished_ms: r.get(6)?,
                status: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per-host results, newest first; all hosts when `host` is `None`.
    pub fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError> {
        self.results("WHERE ?1 IS NULL OR host = ?1 ORDER BY at_ms DESC, run_id DESC LIMIT ?2", params![host, limit])
    }

    /// Each host's newest result, in one query (`drover serve` colours
    /// 10,000 hosts by it every pass); on a tie in time, the later run's
    /// row comes last.
    pub fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError> {
        self.results(
            "WHERE (host, at_ms) IN (SELECT host, MAX(at_ms) FROM host_results GROUP BY host) ORDER BY run_id",
            params![],
        )
    }

    /// Results recorded after `at_ms`, newest first.
    pub fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError> {
        self.results("WHERE at_ms > ?1 ORDER BY at_ms DESC, run_id DESC", params![at_ms])
    }

    fn results(&self, tail: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<HostResult>, StateError> {
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

    pub fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO facts (host, facts, updated_ms) VALUES (?1, ?2, ?3)",
            params![host, facts_json, now_ms()],
        )?;
        Ok(())
    }

    pub fn facts(&self, host: &str) -> Result<Option<String>, StateError> {
        Ok(self.conn.query_row("SELECT facts FROM facts WHERE host = ?1", [host], |r| r.get(0)).optional()?)
    }

    /// Every host's cached facts (JSON), for templates that read other
    /// hosts' facts: one query for the whole fleet, not one per host.
    pub fn all_facts(&self) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self.conn.prepare("SELECT host, facts FROM facts ORDER BY host")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Mark (reason `Some`) or unmark (`None`) a host as drained.
    pub fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError> {
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
    pub fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError> {
        let mut st = self.conn.prepare("SELECT host, since_ms, COALESCE(reason, '') FROM drained ORDER BY host")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join(".drover/state.db")).unwrap();
        (d, s)
    }

    fn run(s: &mut Store) -> i64 {
        s.begin_run(&NewRun {
            command: "apply".into(),
            args: "--hosts h1".into(),
            user: "op".into(),
            project_rev: "abc".into(),
        })
        .unwrap()
    }

    #[test]
    fn migrations_are_versioned_and_reopen_is_idempotent() {
        let (d, s) = store();
        assert_eq!(s.schema_version().unwrap(), 3);
        drop(s);
        let s = Store::open(&d.path().join(".drover/state.db")).unwrap();
        assert_eq!(s.schema_version().unwrap(), 3);
    }

    #[test]
    fn newer_schema_is_refused() {
        let (d, s) = store();
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let e = Store::open(&d.path().join(".drover/state.db")).err().unwrap();
        assert!(e.to_string().contains("upgrade drover"), "{e}");
    }

    #[test]
    fn runs_results_history_and_audit() {
        let (_d, mut s) = store();
        let id = run(&mut s);
        for (host, at) in [("h1", 10), ("h2", 20)] {
            s.record_host(&HostResult {
                run_id: id,
                host: host.into(),
                outcome: "changed".into(),
                generation: Some(1),
                changes: 3,
                bytes_sent: 100,
                files_written: 3,
                duration_ms: 5,
                error: None,
                detail: "{}".into(),
                at_ms: at,
            })
            .unwrap();
        }
        s.finish_run(id, "ok").unwrap();
        let runs = s.runs(10).unwrap();
        assert_eq!((runs[0].id, runs[0].status.as_str()), (id, "ok"));
        assert_eq!(s.history(Some("h1"), 10).unwrap().len(), 1);
        let all = s.history(None, 10).unwrap();
        assert_eq!(all.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["h2", "h1"]);
        let audit = s.audit_log(10).unwrap();
        assert_eq!((audit[0].command.as_str(), audit[0].user.as_str(), audit[0].run_id), ("apply", "op", Some(id)));
    }

    #[test]
    fn latest_result_per_host_and_results_since() {
        let (_d, mut s) = store();
        let (r1, r2) = (run(&mut s), run(&mut s));
        for (run_id, host, outcome, at_ms) in [
            (r1, "h1", "changed", 10),
            (r1, "h2", "failed", 10),
            (r2, "h1", "unchanged", 30),
            (r2, "h3", "changed", 40),
        ] {
            s.record_host(&HostResult {
                run_id,
                host: host.into(),
                outcome: outcome.into(),
                generation: None,
                changes: 0,
                bytes_sent: 0,
                files_written: 0,
                duration_ms: 1,
                error: None,
                detail: "{}".into(),
                at_ms,
            })
            .unwrap();
        }
        let mut latest: Vec<_> =
            s.latest_per_host().unwrap().into_iter().map(|r| (r.host, r.outcome, r.run_id)).collect();
        latest.sort();
        assert_eq!(
            latest,
            [
                ("h1".into(), "unchanged".into(), r2),
                ("h2".into(), "failed".into(), r1),
                ("h3".into(), "changed".into(), r2)
            ]
        );
        let since: Vec<_> = s.results_since(10).unwrap().into_iter().map(|r| r.host).collect();
        assert_eq!(since, ["h3", "h1"], "newest first, strictly after");
    }

    #[test]
    fn drain_marks_and_facts() {
        let (_d, mut s) = store();
        s.set_drained("h3", Some("disk swap")).unwrap();
        assert_eq!(s.drained().unwrap()[0].0, "h3");
        s.set_drained("h3", None).unwrap();
        assert!(s.drained().unwrap().is_empty());
        s.save_facts("h1", "{\"os\":\"debian\"}").unwrap();
        assert_eq!(s.facts("h1").unwrap().as_deref(), Some("{\"os\":\"debian\"}"));
        assert_eq!(s.facts("h2").unwrap(), None);
        s.save_facts("h0", "{}").unwrap();
        assert_eq!(
            s.all_facts().unwrap(),
            vec![("h0".into(), "{}".into()), ("h1".into(), "{\"os\":\"debian\"}".into())]
        );
    }
}
