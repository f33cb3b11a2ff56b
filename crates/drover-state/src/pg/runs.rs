//! A run's lease (PostgreSQL): its owner's heartbeat, the runs whose owner
//! stopped renewing it, one run read back. See [`crate::RunRow::is_orphaned`].

use super::conn::Fail;
use super::Pg;
use crate::{now_ms, RunRow, RunStatus, StateError};

impl Pg {
    /// Push run `id`'s lease forward (only while it is `running`: a run
    /// already marked abandoned stays so). Whether it was still running.
    pub(super) fn heartbeat(&mut self, id: i64) -> Result<bool, StateError> {
        let lease = crate::lease_ms(self.lease);
        self.conn.call(move |c| {
            let n = c.execute(
                "UPDATE runs SET lease_expires_ms = $1 WHERE id = $2 AND status = $3",
                &[&(now_ms() + lease), &id, &RunStatus::Running.as_str()],
            )?;
            Ok(n > 0)
        })
    }

    pub(super) fn mark_abandoned_now(&mut self) -> Result<Vec<i64>, StateError> {
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            let ids = mark_abandoned(&mut tx, now_ms())?;
            tx.commit()?;
            Ok(ids)
        })
    }

    pub(super) fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        self.conn.call(move |c| {
            let sql = format!("SELECT {} FROM runs WHERE id = $1", super::records::RUN_COLUMNS);
            Ok(c.query_opt(&sql, &[&id])?.map(|r| super::records::row_to_run(&r)).transpose()?)
        })
    }
}

/// Mark every `running` run whose lease expired before `now` as abandoned,
/// finished when its lease ran out (the last moment its owner was known
/// alive). Runs recorded before leases were (no lease) are left alone.
pub(super) fn mark_abandoned(tx: &mut postgres::Transaction<'_>, now: i64) -> Result<Vec<i64>, Fail> {
    let rows = tx.query(
        "UPDATE runs SET status = $1, finished_ms = lease_expires_ms
         WHERE status = $2 AND lease_expires_ms IS NOT NULL AND lease_expires_ms < $3 RETURNING id",
        &[&RunStatus::Abandoned.as_str(), &RunStatus::Running.as_str(), &now],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
