//! Runs, per-host results, facts, drain marks and the audit log (PostgreSQL).

use postgres::Row;

use super::Pg;
use crate::{now_ms, AuditEntry, HostResult, NewRun, OpenAlert, RunRow, RunStatus, StateError};

pub(super) const RESULT_COLUMNS: &str =
    "run_id, host, outcome, generation, changes, bytes_sent, files_written, duration_ms, error, detail, at_ms";

/// Fails (rather than panics) on an outcome this drover does not know.
pub(super) fn row_to_result(r: &Row) -> Result<HostResult, postgres::Error> {
    Ok(HostResult {
        run_id: r.get(0),
        host: r.get(1),
        outcome: r.try_get(2)?,
        generation: r.get(3),
        changes: r.get(4),
        bytes_sent: r.get(5),
        files_written: r.get(6),
        duration_ms: r.get(7),
        error: r.get(8),
        detail: r.get(9),
        at_ms: r.get(10),
    })
}

pub(super) const RUN_COLUMNS: &str =
    r#"id, command, args, "user", project_rev, started_ms, finished_ms, status, owner, lease_expires_ms"#;

/// Fails (rather than panics) on a status this drover does not know.
pub(super) fn row_to_run(r: &Row) -> Result<RunRow, postgres::Error> {
    Ok(RunRow {
        id: r.get(0),
        command: r.get(1),
        args: r.get(2),
        user: r.get(3),
        project_rev: r.get(4),
        started_ms: r.get(5),
        finished_ms: r.get(6),
        status: r.try_get(7)?,
        owner: r.get(8),
        lease_expires_ms: r.get(9),
    })
}

pub(super) fn row_to_audit(r: &Row, from: usize) -> AuditEntry {
    AuditEntry {
        at_ms: r.get(from),
        user: r.get(from + 1),
        command: r.get(from + 2),
        args: r.get(from + 3),
        project_rev: r.get(from + 4),
        run_id: r.get(from + 5),
    }
}

/// One statement for any number of results: each column travels as one
/// array (`UNNEST`), so 10,000 hosts cost one round trip, not 10,000.
pub(super) const INSERT_RESULTS: &str = "INSERT INTO host_results
    (run_id, host, outcome, generation, changes, bytes_sent, files_written, duration_ms, error, detail, at_ms)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                         $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::bigint[])
    ON CONFLICT (run_id, host) DO UPDATE SET outcome = EXCLUDED.outcome, generation = EXCLUDED.generation,
      changes = EXCLUDED.changes, bytes_sent = EXCLUDED.bytes_sent, files_written = EXCLUDED.files_written,
      duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error, detail = EXCLUDED.detail, at_ms = EXCLUDED.at_ms";

pub(super) fn insert_results(c: &mut impl postgres::GenericClient, hs: &[HostResult]) -> Result<(), postgres::Error> {
    let col = |f: fn(&HostResult) -> i64| hs.iter().map(f).collect::<Vec<i64>>();
    let text = |f: fn(&HostResult) -> &str| hs.iter().map(|h| f(h).to_string()).collect::<Vec<String>>();
    let (run_id, changes, bytes, files, dur, at) = (
        col(|h| h.run_id),
        col(|h| h.changes),
        col(|h| h.bytes_sent),
        col(|h| h.files_written),
        col(|h| h.duration_ms),
        col(|h| h.at_ms),
    );
    let (host, outcome, detail) = (text(|h| &h.host), text(|h| h.outcome.as_str()), text(|h| &h.detail));
    let generation: Vec<Option<i64>> = hs.iter().map(|h| h.generation).collect();
    let error: Vec<Option<String>> = hs.iter().map(|h| h.error.clone()).collect();
    c.execute(
        INSERT_RESULTS,
        &[&run_id, &host, &outcome, &generation, &changes, &bytes, &files, &dur, &error, &detail, &at],
    )?;
    Ok(())
}

impl Pg {
    pub(super) fn begin_run(&mut self, r: &NewRun) -> Result<i64, StateError> {
        let r = r.clone();
        let (pid, machine, owner) = (i64::from(std::process::id()), crate::machine(), crate::owner());
        let lease = crate::lease_ms(self.lease);
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            let now = now_ms();
            super::runs::mark_abandoned(&mut tx, now)?;
            let expires = now + lease;
            let id: i64 = tx
                .query_one(
                    r#"INSERT INTO runs (command, args, "user", project_rev, pid, machine, started_ms, owner, lease_expires_ms)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"#,
                    &[&r.command, &r.args, &r.user, &r.project_rev, &pid, &machine, &now, &owner, &expires],
                )?
                .get(0);
            tx.execute(
                r#"INSERT INTO audit (at_ms, "user", command, args, project_rev, run_id) VALUES ($1, $2, $3, $4, $5, $6)"#,
                &[&now, &r.user, &r.command, &r.args, &r.project_rev, &id],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    pub(super) fn run_pid(&self, run_id: i64) -> Result<Option<u32>, StateError> {
        self.conn.call(move |c| {
            let pid: Option<i64> = c.query_opt("SELECT pid FROM runs WHERE id = $1", &[&run_id])?.map(|r| r.get(0));
            Ok(pid.and_then(|p| u32::try_from(p).ok()))
        })
    }

    pub(super) fn finish_run(&mut self, id: i64, status: RunStatus) -> Result<(), StateError> {
        let status = status.as_str();
        self.conn.call(move |c| {
            c.execute("UPDATE runs SET finished_ms = $1, status = $2 WHERE id = $3", &[&now_ms(), &status, &id])?;
            Ok(())
        })
    }

    pub(super) fn audit(&mut self, e: &AuditEntry) -> Result<(), StateError> {
        let e = e.clone();
        self.conn.call(move |c| {
            c.execute(
                r#"INSERT INTO audit (at_ms, "user", command, args, project_rev, run_id) VALUES ($1, $2, $3, $4, $5, $6)"#,
                &[&e.at_ms, &e.user, &e.command, &e.args, &e.project_rev, &e.run_id],
            )?;
            Ok(())
        })
    }

    pub(super) fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        self.conn.call(move |c| {
            let rows = c.query(
                r#"SELECT at_ms, "user", command, args, project_rev, run_id FROM audit ORDER BY id DESC LIMIT $1"#,
                &[&limit],
            )?;
            Ok(rows.iter().map(|r| row_to_audit(r, 0)).collect())
        })
    }

    pub(super) fn record_hosts(&mut self, hs: &[HostResult]) -> Result<(), StateError> {
        let hs = hs.to_vec();
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            insert_results(&mut tx, &hs)?;
            tx.commit()?;
            Ok(())
        })
    }

    pub(super) fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        self.conn.call(move |c| {
            let rows = c.query(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT $1"), &[&limit])?;
            Ok(rows.iter().map(row_to_run).collect::<Result<_, _>>()?)
        })
    }

    pub(super) fn history(&self, host: Option<&str>, limit: i64) -> Result<Vec<HostResult>, StateError> {
        let host = host.map(str::to_string);
        self.results(
            "WHERE $1::text IS NULL OR host = $1 ORDER BY at_ms DESC, run_id DESC, host DESC LIMIT $2",
            move |c, sql| c.query(sql, &[&host, &limit]),
        )
    }

    pub(super) fn latest_per_host(&self) -> Result<Vec<HostResult>, StateError> {
        self.results(
            "WHERE (host, at_ms) IN (SELECT host, MAX(at_ms) FROM host_results GROUP BY host) ORDER BY run_id",
            |c, sql| c.query(sql, &[]),
        )
    }

    pub(super) fn results_since(&self, at_ms: i64) -> Result<Vec<HostResult>, StateError> {
        self.results("WHERE at_ms > $1 ORDER BY at_ms DESC, run_id DESC, host DESC", move |c, sql| {
            c.query(sql, &[&at_ms])
        })
    }

    pub(super) fn run_results(&self, run_id: i64) -> Result<Vec<HostResult>, StateError> {
        self.results("WHERE run_id = $1 ORDER BY host", move |c, sql| c.query(sql, &[&run_id]))
    }

    pub(super) fn run_totals(&self, from_run: i64) -> Result<Vec<crate::RunTotal>, StateError> {
        self.conn.call(move |c| {
            let rows = c.query(
                "SELECT run_id, outcome, COUNT(*), SUM(changes)::bigint, SUM(bytes_sent)::bigint, MAX(duration_ms)
                 FROM host_results WHERE run_id >= $1 GROUP BY run_id, outcome ORDER BY run_id, outcome",
                &[&from_run],
            )?;
            let totals = rows
                .iter()
                .map(|r| {
                    Ok(crate::RunTotal {
                        run_id: r.get(0),
                        outcome: r.try_get(1)?,
                        hosts: r.get(2),
                        changes: r.get(3),
                        bytes_sent: r.get(4),
                        max_duration_ms: r.get(5),
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()?;
            Ok(totals)
        })
    }

    fn results(
        &self,
        tail: &str,
        q: impl FnOnce(&mut postgres::Client, &str) -> Result<Vec<Row>, postgres::Error> + Send + 'static,
    ) -> Result<Vec<HostResult>, StateError> {
        let sql = format!("SELECT {RESULT_COLUMNS} FROM host_results {tail}");
        self.conn.call(move |c| Ok(q(c, &sql)?.iter().map(row_to_result).collect::<Result<_, _>>()?))
    }

    pub(super) fn save_facts(&mut self, host: &str, facts_json: &str) -> Result<(), StateError> {
        let (host, facts) = (host.to_string(), facts_json.to_string());
        self.conn.call(move |c| {
            c.execute(
                "INSERT INTO facts (host, facts, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (host) DO UPDATE SET facts = EXCLUDED.facts, updated_ms = EXCLUDED.updated_ms",
                &[&host, &facts, &now_ms()],
            )?;
            Ok(())
        })
    }

    pub(super) fn facts(&self, host: &str) -> Result<Option<String>, StateError> {
        let host = host.to_string();
        self.conn.call(move |c| Ok(c.query_opt("SELECT facts FROM facts WHERE host = $1", &[&host])?.map(|r| r.get(0))))
    }

    pub(super) fn all_facts(&self) -> Result<Vec<(String, String)>, StateError> {
        self.conn.call(|c| {
            Ok(c.query("SELECT host, facts FROM facts ORDER BY host", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    pub(super) fn set_drained(&mut self, host: &str, reason: Option<&str>) -> Result<(), StateError> {
        let (host, reason) = (host.to_string(), reason.map(str::to_string));
        self.conn.call(move |c| {
            match reason {
                Some(r) => c.execute(
                    "INSERT INTO drained (host, since_ms, reason) VALUES ($1, $2, $3)
                     ON CONFLICT (host) DO UPDATE SET since_ms = EXCLUDED.since_ms, reason = EXCLUDED.reason",
                    &[&host, &now_ms(), &r],
                )?,
                None => c.execute("DELETE FROM drained WHERE host = $1", &[&host])?,
            };
            Ok(())
        })
    }

    pub(super) fn drained(&self) -> Result<Vec<(String, i64, String)>, StateError> {
        self.conn.call(|c| {
            let rows = c.query("SELECT host, since_ms, COALESCE(reason, '') FROM drained ORDER BY host", &[])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        })
    }

    pub(super) fn open_alerts(&self) -> Result<Vec<OpenAlert>, StateError> {
        self.conn.call(|c| {
            let rows = c.query("SELECT rule, subject, since_ms, fired FROM open_alerts ORDER BY rule, subject", &[])?;
            Ok(rows
                .iter()
                .map(|r| OpenAlert { rule: r.get(0), subject: r.get(1), since_ms: r.get(2), fired: r.get(3) })
                .collect())
        })
    }

    /// Replace the whole set, in one transaction (it is small: one row per
    /// rule and subject whose condition holds).
    pub(super) fn set_open_alerts(&mut self, alerts: &[OpenAlert]) -> Result<(), StateError> {
        let alerts = alerts.to_vec();
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM open_alerts", &[])?;
            for a in &alerts {
                tx.execute(
                    "INSERT INTO open_alerts (rule, subject, since_ms, fired) VALUES ($1, $2, $3, $4)",
                    &[&a.rule, &a.subject, &a.since_ms, &a.fired],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}
