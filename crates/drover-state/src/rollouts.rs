//! Rollout progress: the plan, the first unfinished batch, the status, the
//! project revision the rollout started from, and the run that drives it.
//!
//! `run_id` is the run of the controller driving the rollout *now*: a resume
//! in a new process takes it over, so a later `pause`/`resume` finds the live
//! controller instead of the dead one that started the rollout.

use rusqlite::{params, OptionalExtension};

use crate::{now_ms, StateError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub id: i64,
    /// The run of the controller driving it (the last to start or resume it).
    pub run_id: Option<i64>,
    /// The rollout plan (batches, policy) as JSON, owned by the controller.
    pub plan: String,
    /// Index of the first batch not yet done.
    pub next_batch: i64,
    /// running | paused | aborted | failed | done
    pub status: String,
    pub updated_ms: i64,
    /// The project revision it started from (see `drover::revision`);
    /// `None` for rollouts recorded before revisions were.
    pub revision: Option<String>,
}

const COLUMNS: &str = "id, run_id, plan, next_batch, status, updated_ms, revision";

impl Store {
    pub fn create_rollout(&mut self, run_id: Option<i64>, plan: &str, revision: &str) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO rollouts (run_id, plan, next_batch, status, updated_ms, revision)
             VALUES (?1, ?2, 0, 'running', ?3, ?4)",
            params![run_id, plan, now_ms(), revision],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn update_rollout(&mut self, id: i64, next_batch: i64, status: &str) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE rollouts SET next_batch = ?1, status = ?2, updated_ms = ?3 WHERE id = ?4",
            params![next_batch, status, now_ms(), id],
        )?;
        Ok(())
    }

    /// A controller continuing the rollout in run `run_id`: it is now the
    /// one that `pause`/`resume` talk to, and the rollout is running.
    pub fn take_over_rollout(&mut self, id: i64, run_id: i64) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE rollouts SET run_id = ?1, status = 'running', updated_ms = ?2 WHERE id = ?3",
            params![run_id, now_ms(), id],
        )?;
        Ok(())
    }

    /// Record that batches before `next_batch` are done, leaving the status
    /// alone (a `pause` from another process must not be overwritten).
    pub fn advance_rollout(&mut self, id: i64, next_batch: i64) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE rollouts SET next_batch = ?1, updated_ms = ?2 WHERE id = ?3",
            params![next_batch, now_ms(), id],
        )?;
        Ok(())
    }

    pub fn rollout(&self, id: i64) -> Result<Option<Rollout>, StateError> {
        let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], row_to_rollout).optional()?)
    }

    /// The newest rollouts first.
    pub fn rollouts(&self, limit: i64) -> Result<Vec<Rollout>, StateError> {
        let mut st = self.conn.prepare(&format!("SELECT {COLUMNS} FROM rollouts ORDER BY id DESC LIMIT ?1"))?;
        let rows = st.query_map([limit], row_to_rollout)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest rollout that has not finished (running or paused, or
    /// running when its controller died).
    pub fn unfinished_rollout(&self) -> Result<Option<Rollout>, StateError> {
        let sql =
            format!("SELECT {COLUMNS} FROM rollouts WHERE status IN ('running', 'paused') ORDER BY id DESC LIMIT 1");
        Ok(self.conn.query_row(&sql, [], row_to_rollout).optional()?)
    }
}

fn row_to_rollout(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rollout> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts_resume_from_the_store_with_their_revision_and_a_new_owner() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join(".drover/state.db")).unwrap();
        let id = s.create_rollout(Some(1), "{\"batches\":[[\"h1\"],[\"h2\"]]}", "inputs:abc").unwrap();
        s.update_rollout(id, 1, "paused").unwrap();
        let r = s.unfinished_rollout().unwrap().unwrap();
        assert_eq!((r.id, r.next_batch, r.run_id, r.revision.as_deref()), (id, 1, Some(1), Some("inputs:abc")));
        s.take_over_rollout(id, 7).unwrap();
        let r = s.rollout(id).unwrap().unwrap();
        assert_eq!((r.run_id, r.status.as_str(), r.next_batch), (Some(7), "running", 1));
        s.update_rollout(id, 2, "done").unwrap();
        assert!(s.unfinished_rollout().unwrap().is_none());
    }
}
