//! A run's lease (SQLite): its owner's heartbeat, the runs whose owner
//! stopped renewing it, one run read back. See [`crate::RunRow::is_orphaned`].

use rusqlite::{params, OptionalExtension};

use super::Sqlite;
use crate::{now_ms, RunRow, RunStatus, StateError};

impl Sqlite {
    /// Push run `id`'s lease forward (only while it is `running`: a run
    /// already marked abandoned stays so). Whether it was still running.
    pub(super) fn heartbeat(&mut self, id: i64) -> Result<bool, StateError> {
        let until = now_ms() + crate::lease_ms(self.lease);
        let n = self.conn.execute(
            "UPDATE runs SET lease_expires_ms = ?1 WHERE id = ?2 AND status = ?3",
            params![until, id, RunStatus::Running],
        )?;
        Ok(n > 0)
    }

    pub(super) fn mark_abandoned_now(&mut self) -> Result<Vec<i64>, StateError> {
        let tx = self.conn.transaction()?;
        let ids = mark_abandoned(&tx, now_ms())?;
        tx.commit()?;
        Ok(ids)
    }

    pub(super) fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        let sql = format!("SELECT {} FROM runs WHERE id = ?1", super::records::RUN_COLUMNS);
        Ok(self.conn.query_row(&sql, [id], super::records::row_to_run).optional()?)
    }
}

/// Mark every `running` run whose lease expired before `now` as abandoned,
/// finished when its lease ran out (the last moment its owner was known
/// alive). Runs recorded before leases were (no lease) are left alone.
pub(super) fn mark_abandoned(tx: &rusqlite::Transaction<'_>, now: i64) -> Result<Vec<i64>, StateError> {
    let mut st = tx.prepare_cached(
        "UPDATE runs SET status = ?1, finished_ms = lease_expires_ms
         WHERE status = ?2 AND lease_expires_ms IS NOT NULL AND lease_expires_ms < ?3 RETURNING id",
    )?;
    let ids = st.query_map(params![RunStatus::Abandoned, RunStatus::Running, now], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}
