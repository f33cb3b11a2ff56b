//! Rollout progress (PostgreSQL). See [`crate::Rollout`].

use postgres::Row;

use super::Pg;
use crate::{now_ms, Rollout, RolloutStatus, StateError};

pub(super) const COLUMNS: &str = "id, run_id, plan, next_batch, status, updated_ms, revision";

/// Fails (rather than panics) on a status this drover does not know.
pub(super) fn row_to_rollout(r: &Row) -> Result<Rollout, postgres::Error> {
    Ok(Rollout {
        id: r.get(0),
        run_id: r.get(1),
        plan: r.get(2),
        next_batch: r.get(3),
        status: r.try_get(4)?,
        updated_ms: r.get(5),
        revision: r.get(6),
    })
}

impl Pg {
    pub(super) fn create_rollout(
        &mut self,
        run_id: Option<i64>,
        plan: &str,
        revision: &str,
    ) -> Result<i64, StateError> {
        let (plan, revision) = (plan.to_string(), revision.to_string());
        self.conn.call(move |c| {
            Ok(c.query_one(
                "INSERT INTO rollouts (run_id, plan, next_batch, status, updated_ms, revision)
                 VALUES ($1, $2, 0, 'running', $3, $4) RETURNING id",
                &[&run_id, &plan, &now_ms(), &revision],
            )?
            .get(0))
        })
    }

    pub(super) fn update_rollout(&mut self, id: i64, next_batch: i64, status: RolloutStatus) -> Result<(), StateError> {
        let status = status.as_str();
        self.exec("UPDATE rollouts SET next_batch = $1, status = $2, updated_ms = $3 WHERE id = $4", move |c, sql| {
            c.execute(sql, &[&next_batch, &status, &now_ms(), &id])
        })
    }

    pub(super) fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError> {
        self.exec(
            "UPDATE rollouts SET run_id = $1, status = 'running', updated_ms = $2 WHERE id = $3",
            move |c, sql| c.execute(sql, &[&run_id, &now_ms(), &id]),
        )
    }

    pub(super) fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError> {
        self.exec("UPDATE rollouts SET next_batch = $1, updated_ms = $2 WHERE id = $3", move |c, sql| {
            c.execute(sql, &[&next_batch, &now_ms(), &id])
        })
    }

    fn exec(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut postgres::Client, &str) -> Result<u64, postgres::Error> + Send + 'static,
    ) -> Result<(), StateError> {
        self.conn.call(move |c| {
            f(c, sql)?;
            Ok(())
        })
    }

    pub(super) fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError> {
        let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE id = $1");
        self.conn.call(move |c| Ok(c.query_opt(&sql, &[&id])?.as_ref().map(row_to_rollout).transpose()?))
    }

    pub(super) fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        let sql = format!("SELECT {COLUMNS} FROM rollouts ORDER BY id DESC LIMIT $1");
        self.conn.call(move |c| Ok(c.query(&sql, &[&limit])?.iter().map(row_to_rollout).collect::<Result<_, _>>()?))
    }

    pub(super) fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError> {
        let sql =
            format!("SELECT {COLUMNS} FROM rollouts WHERE status IN ('running', 'paused') ORDER BY id DESC LIMIT 1");
        self.conn.call(move |c| Ok(c.query_opt(&sql, &[])?.as_ref().map(row_to_rollout).transpose()?))
    }
}
