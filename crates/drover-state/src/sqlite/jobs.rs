//! Runs split across workers on SQLite: the same tables as PostgreSQL's.
//! One machine only (the file is local), so a claim is one immediate
//! transaction: the database's write lock keeps two claimers apart.
//! `drover apply --workers` refuses SQLite; this keeps the schema and the
//! trait the same on both backends. An open run is one still `running`
//! (SQLite host locks follow pids, not leases).

use std::time::Duration;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::Sqlite;
use crate::{now_ms, Claim, HostResult, JobRow, StateError};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const CLAIMABLE: &str = "((state = 'queued' OR (state = 'claimed' AND lease_expires_ms < ?1))
    AND run_id IN (SELECT id FROM runs WHERE status = 'running'))";

impl Sqlite {
    pub(super) fn create_jobs(&mut self, run_id: i64, spec: &str, hosts: &[String]) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO job_runs (run_id, spec) VALUES (?1, ?2) ON CONFLICT (run_id) DO NOTHING",
            params![run_id, spec],
        )?;
        {
            let mut st = tx.prepare("INSERT INTO jobs (run_id, host) VALUES (?1, ?2)")?;
            for h in hosts {
                st.execute(params![run_id, h])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn claim_jobs(
        &mut self,
        worker: &str,
        limit: i64,
        lease: Duration,
    ) -> Result<Option<Claim>, StateError> {
        let now = now_ms();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let run_id: Option<i64> =
            tx.query_row(&format!("SELECT MIN(run_id) FROM jobs WHERE {CLAIMABLE}"), params![now], |r| r.get(0))?;
        let Some(run_id) = run_id else { return Ok(None) };
        let hosts: Vec<String> = {
            let mut st =
                tx.prepare(&format!("SELECT host FROM jobs WHERE run_id = ?2 AND {CLAIMABLE} ORDER BY host LIMIT ?3"))?;
            let rows = st.query_map(params![now, run_id, limit], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        {
            let mut st = tx.prepare(
                "UPDATE jobs SET state = 'claimed',
                   claimed_before = CASE WHEN state = 'claimed' THEN claimed_by ELSE claimed_before END,
                   claimed_by = ?1, claims = claims + 1, lease_expires_ms = ?2
                 WHERE run_id = ?3 AND host = ?4",
            )?;
            for h in &hosts {
                st.execute(params![worker, now + ms(lease), run_id, h])?;
            }
        }
        let spec: String = tx
            .query_row("SELECT spec FROM job_runs WHERE run_id = ?1", params![run_id], |r| r.get(0))
            .optional()?
            .unwrap_or_default();
        tx.commit()?;
        Ok(Some(Claim { run_id, spec, hosts }))
    }

    pub(super) fn renew_jobs(&mut self, worker: &str, lease: Duration) -> Result<u64, StateError> {
        let n = self.conn.execute(
            "UPDATE jobs SET lease_expires_ms = ?2 WHERE claimed_by = ?1 AND state = 'claimed'",
            params![worker, now_ms() + ms(lease)],
        )?;
        Ok(n as u64)
    }

    pub(super) fn finish_jobs(&mut self, worker: &str, results: &[HostResult]) -> Result<u64, StateError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut kept = 0;
        for r in results {
            let n = tx.execute(
                "UPDATE jobs SET state = 'done', outcome = ?4
                 WHERE run_id = ?1 AND host = ?2 AND claimed_by = ?3 AND state = 'claimed'",
                params![r.run_id, r.host, worker, r.outcome],
            )?;
            if n == 1 {
                kept += 1;
                tx.execute(
                    "INSERT OR REPLACE INTO host_results
                     (run_id, host, outcome, generation, changes, bytes_sent, files_written, duration_ms, error, detail, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        r.run_id,
                        r.host,
                        r.outcome,
                        r.generation,
                        r.changes,
                        r.bytes_sent,
                        r.files_written,
                        r.duration_ms,
                        r.error,
                        r.detail,
                        r.at_ms
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(kept)
    }

    pub(super) fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT j.run_id, j.host, j.state, j.claimed_by, j.claims, j.claimed_before, j.lease_expires_ms,
                    j.outcome, r.detail
             FROM jobs j LEFT JOIN host_results r ON r.run_id = j.run_id AND r.host = j.host AND j.state = 'done'
             WHERE j.run_id = ?1 ORDER BY j.host",
        )?;
        let rows = st.query_map(params![run_id], |r| {
            Ok(JobRow {
                run_id: r.get(0)?,
                host: r.get(1)?,
                state: r.get(2)?,
                claimed_by: r.get(3)?,
                claims: r.get(4)?,
                claimed_before: r.get(5)?,
                lease_expires_ms: r.get(6)?,
                outcome: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn unfinished_jobs(&self) -> Result<i64, StateError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM jobs WHERE state <> 'done' AND run_id IN (SELECT id FROM runs WHERE status = 'running')", [], |r| r.get(0))?)
    }
}
