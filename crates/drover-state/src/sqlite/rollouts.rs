//! Rollout progress (SQLite). See [`crate::Rollout`].

use rusqlite::{params, OptionalExtension};

use super::Sqlite;
use crate::{now_ms, Rollout, RolloutStatus, StateError};

pub(super) const COLUMNS: &str = "id, run_id, plan, next_batch, status, updated_ms, revision";

impl Sqlite {
    pub(super) fn create_rollout(
        &mut self,
        run_id: Option<i64>,
        plan: &str,
        revision: &str,
    ) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO rollouts (run_id, plan, next_batch, status, updated_ms, revision)
             VALUES (?1, ?2, 0, 'running', ?3, ?4)",
            params![run_id, plan, now_ms(), revision],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub(super) fn update_rollout(&mut self, id: i64, next_batch: i64, status: RolloutStatus) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE rollouts SET next_batch = ?1, status = ?2, updated_ms = ?3 WHERE id = ?4",
            params![next_batch, status, now_ms(), id],
        )?;
        Ok(())
    }

    /// A controller continuing the rollout in run `run_id`: it is now the
    /// one that `pause`/`resume` talk to, and the rollout is running.
    pub(super) fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE rollouts SET run_id = ?1, status = 'running', updated_ms = ?2 WHERE id = ?3",
            params![run_id, now_ms(), id],
        )?;
        Ok(())
    }

    /// Record that batches before `next_batch` are done, leaving the status
    /// alone (a `pause` from another process must not be overwritten).
    pub(super) fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE rollouts SET next_batch = ?1, updated_ms = ?2 WHERE id = ?3",
            params![next_batch, now_ms(), id],
        )?;
        Ok(())
    }

    pub(super) fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError> {
        let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], row_to_rollout).optional()?)
    }

    /// The newest rollouts first.
    pub(super) fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        let mut st = self.conn.prepare(&format!("SELECT {COLUMNS} FROM rollouts ORDER BY id DESC LIMIT ?1"))?;
        let rows = st.query_map([limit], row_to_rollout)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest rollout that has not finished (running or paused, or
    /// running when its controller died).
    pub(super) fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError> {
        let sql =
            format!("SELECT {COLUMNS} FROM rollouts WHERE status IN ('running', 'paused') ORDER BY id DESC LIMIT 1");
        Ok(self.conn.query_row(&sql, [], row_to_rollout).optional()?)
    }
}

pub(super) fn row_to_rollout(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rollout> {
    Ok(Rollout {
        id: r.get(0)?,
        run_id: r.get(1)?,
        plan: r.get(2)?,
        next_batch: r.get(3)?,
        status: r.get(4)?,
        updated_ms: r.get(5)?,
        revision: r.get(6)?,
    })
}
