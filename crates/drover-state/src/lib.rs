//! The state store: one SQLite file per project (`.drover/state.db`).
//!
//! Why SQLite: every run must be recorded durably and queried per host
//! (`history`, `status`), a second controller must be refused while the first
//! holds hosts, and an interrupted rollout must be resumable — a transactional
//! embedded database does all three with no server. Migrations are an ordered
//! list of SQL scripts; `PRAGMA user_version` says how many have run.
//!
//! rusqlite stays inside this crate: callers see plain structs.

mod alerts;
mod locks;
mod migrations;
mod records;
mod rollouts;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use alerts::OpenAlert;
pub use locks::{HostLock, LockHolder};
pub use records::{AuditEntry, HostResult, NewRun, RunRow};
pub use rollouts::Rollout;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("state store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "state store {path} has schema version {found}, newer than this drover understands ({known}); upgrade drover"
    )]
    TooNew { path: String, found: u32, known: u32 },
    #[error("{}", locks::describe(.0))]
    Locked(Vec<LockHolder>),
}

pub struct Store {
    conn: Connection,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Open (creating it and its directory if needed) and migrate.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Open {
                path: p.clone(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StateError::Open { path: p.clone(), source })?;
        // WAL: readers (status) never block the writer (apply); a busy
        // timeout instead of immediate SQLITE_BUSY between two controllers.
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "normal")?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mut s = Store { conn };
        migrations::run(&mut s.conn, &p)?;
        Ok(s)
    }

    pub fn schema_version(&self) -> Result<u32, StateError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}
