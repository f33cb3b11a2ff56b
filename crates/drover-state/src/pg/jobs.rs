//! Runs split across workers on PostgreSQL: one row per host, claimed with
//! `FOR UPDATE SKIP LOCKED` (two workers racing for jobs each get different
//! ones, neither waits for the other) and held on a lease of the server's
//! clock, so a job whose worker died becomes claimable again.
//!
//! Only jobs of an open run count: one whose controller still holds its
//! host locks (their lease is alive). A run whose `apply` died is not
//! carried out later by whoever starts a worker next.

use std::time::Duration;

use super::locks::SERVER_NOW_MS;
use super::records::insert_results;
use super::Pg;
use crate::{Claim, HostResult, JobRow, StateError};

/// Runs whose controller still holds its hosts.
fn open_runs() -> String {
    format!("(SELECT run_id FROM host_locks WHERE expires_ms > {SERVER_NOW_MS})")
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Pg {
    pub(super) fn create_jobs(&mut self, run_id: i64, spec: &str, hosts: &[String]) -> Result<(), StateError> {
        let (spec, hosts) = (spec.to_string(), hosts.to_vec());
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO job_runs (run_id, spec) VALUES ($1, $2) ON CONFLICT (run_id) DO NOTHING",
                &[&run_id, &spec],
            )?;
            tx.execute(
                "INSERT INTO jobs (run_id, host) SELECT $1, h FROM UNNEST($2::text[]) AS h",
                &[&run_id, &hosts],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    pub(super) fn claim_jobs(
        &mut self,
        worker: &str,
        limit: i64,
        lease: Duration,
    ) -> Result<Option<Claim>, StateError> {
        let (worker, lease) = (worker.to_string(), ms(lease));
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            let claimable = format!(
                "((state = 'queued' OR (state = 'claimed' AND lease_expires_ms < {SERVER_NOW_MS})) AND run_id IN {})",
                open_runs()
            );
            // In SET, `j.state` and `j.claimed_by` are the row's values
            // before this update: a job taken over names its old holder.
            let sql = format!(
                "UPDATE jobs j SET state = 'claimed',
                   claimed_before = CASE WHEN j.state = 'claimed' THEN j.claimed_by ELSE j.claimed_before END,
                   claimed_by = $1, claims = j.claims + 1, lease_expires_ms = {SERVER_NOW_MS} + $2
                 FROM (SELECT run_id, host FROM jobs
                       WHERE run_id = (SELECT MIN(run_id) FROM jobs WHERE {claimable}) AND {claimable}
                       ORDER BY host LIMIT $3 FOR UPDATE SKIP LOCKED) c
                 WHERE j.run_id = c.run_id AND j.host = c.host
                 RETURNING j.run_id, j.host"
            );
            let rows = tx.query(&sql, &[&worker, &lease, &limit])?;
            let Some(first) = rows.first() else {
                tx.commit()?;
                return Ok(None);
            };
            let run_id: i64 = first.get(0);
            let mut hosts: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
            hosts.sort();
            let spec: String = tx.query_one("SELECT spec FROM job_runs WHERE run_id = $1", &[&run_id])?.get(0);
            tx.commit()?;
            Ok(Some(Claim { run_id, spec, hosts }))
        })
    }

    pub(super) fn renew_jobs(&mut self, worker: &str, lease: Duration) -> Result<u64, StateError> {
        let (worker, lease) = (worker.to_string(), ms(lease));
        self.conn.call(move |c| {
            let sql = format!(
                "UPDATE jobs SET lease_expires_ms = {SERVER_NOW_MS} + $2 WHERE claimed_by = $1 AND state = 'claimed'"
            );
            Ok(c.execute(&sql, &[&worker, &lease])?)
        })
    }

    pub(super) fn finish_jobs(&mut self, worker: &str, results: &[HostResult]) -> Result<u64, StateError> {
        let (worker, results) = (worker.to_string(), results.to_vec());
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            let mut kept = Vec::with_capacity(results.len());
            for r in results {
                let n = tx.execute(
                    "UPDATE jobs SET state = 'done', outcome = $4
                     WHERE run_id = $1 AND host = $2 AND claimed_by = $3 AND state = 'claimed'",
                    &[&r.run_id, &r.host, &worker, &r.outcome.as_str()],
                )?;
                if n == 1 {
                    kept.push(r);
                }
            }
            insert_results(&mut tx, &kept)?;
            tx.commit()?;
            Ok(kept.len() as u64)
        })
    }

    pub(super) fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>, StateError> {
        self.conn.call(move |c| {
            let rows = c.query(
                "SELECT j.run_id, j.host, j.state, j.claimed_by, j.claims, j.claimed_before, j.lease_expires_ms,
                        j.outcome, r.detail
                 FROM jobs j LEFT JOIN host_results r ON r.run_id = j.run_id AND r.host = j.host AND j.state = 'done'
                 WHERE j.run_id = $1 ORDER BY j.host",
                &[&run_id],
            )?;
            // `try_get`: a state or outcome this drover does not know fails
            // the read instead of panicking.
            Ok(rows
                .iter()
                .map(|r| {
                    Ok(JobRow {
                        run_id: r.get(0),
                        host: r.get(1),
                        state: r.try_get(2)?,
                        claimed_by: r.get(3),
                        claims: r.get(4),
                        claimed_before: r.get(5),
                        lease_expires_ms: r.get(6),
                        outcome: r.try_get(7)?,
                        detail: r.get(8),
                    })
                })
                .collect::<Result<_, postgres::Error>>()?)
        })
    }

    pub(super) fn unfinished_jobs(&self) -> Result<i64, StateError> {
        self.conn.call(|c| {
            let sql = format!("SELECT COUNT(*) FROM jobs WHERE state <> 'done' AND run_id IN {}", open_runs());
            Ok(c.query_one(&sql, &[])?.get(0))
        })
    }
}
