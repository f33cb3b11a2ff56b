//! Host locks on SQLite: a second controller working on the same hosts is
//! refused with a message naming the holder, never interleaved. One
//! machine shares the file, so a pid identifies the holder: locks of a
//! controller that died (its pid is gone) are taken over at once.

use rusqlite::params;

use super::Sqlite;
use crate::{machine, now_ms, HostLock, LockHolder, StateError};

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Sqlite {
    /// Take all of `hosts` for `run_id`, or none: refused if any is held by a
    /// live process.
    pub(super) fn lock_hosts(&mut self, run_id: i64, hosts: &[String]) -> Result<HostLock, StateError> {
        let me = std::process::id();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut held = Vec::new();
        {
            let mut st = tx.prepare(
                "SELECT l.host, l.run_id, l.pid, l.machine, COALESCE(r.command, '?'), l.since_ms
                 FROM host_locks l LEFT JOIN runs r ON r.id = l.run_id WHERE l.host = ?1",
            )?;
            for h in hosts {
                let row = st.query_row([h], |r| {
                    Ok(LockHolder {
                        host: r.get(0)?,
                        run_id: r.get(1)?,
                        pid: r.get(2)?,
                        machine: r.get(3)?,
                        command: r.get(4)?,
                        since_ms: r.get(5)?,
                    })
                });
                match row {
                    Ok(holder) if holder.pid != me && alive(holder.pid) => held.push(holder),
                    Ok(_) | Err(rusqlite::Error::QueryReturnedNoRows) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !held.is_empty() {
            return Err(StateError::Locked(held));
        }
        let (now, machine) = (now_ms(), machine());
        for h in hosts {
            tx.execute(
                "INSERT OR REPLACE INTO host_locks (host, run_id, pid, machine, since_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![h, run_id, me, machine, now],
            )?;
        }
        tx.commit()?;
        Ok(HostLock { run_id, hosts: hosts.to_vec(), lease: None })
    }

    pub(super) fn unlock_hosts(&mut self, lock: HostLock) -> Result<(), StateError> {
        let tx = self.conn.transaction()?;
        for h in &lock.hosts {
            tx.execute("DELETE FROM host_locks WHERE host = ?1 AND run_id = ?2", params![h, lock.run_id])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewRun;

    #[test]
    fn a_live_holder_refuses_and_a_dead_one_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        let mut s = Sqlite::open(&path).unwrap();
        let nr = NewRun { command: "apply".into(), args: String::new(), user: "u".into(), project_rev: "r".into() };
        let run1 = s.begin_run(&nr).unwrap();
        let hosts = vec!["h1".to_string(), "h2".to_string()];
        // A lock held by another live process (pid 1 always exists).
        s.conn
            .execute(
                "INSERT INTO host_locks (host, run_id, pid, machine, since_ms) VALUES ('h2', ?1, 1, 'box7', 0)",
                [run1],
            )
            .unwrap();
        let run2 = s.begin_run(&nr).unwrap();
        let err = s.lock_hosts(run2, &hosts).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("h2") && msg.contains("another drover") && msg.contains("pid 1 on box7"), "{msg}");
        // Nothing was taken: h1 is still free.
        let n: i64 = s.conn.query_row("SELECT COUNT(*) FROM host_locks WHERE host = 'h1'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
        // The holder dies (a pid that cannot exist): its lock is taken over.
        s.conn.execute("UPDATE host_locks SET pid = 4194305 WHERE host = 'h2'", []).unwrap();
        let lock = s.lock_hosts(run2, &hosts).unwrap();
        s.unlock_hosts(lock).unwrap();
        let n: i64 = s.conn.query_row("SELECT COUNT(*) FROM host_locks", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        let s = Sqlite::open(&path).unwrap();
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let e = Sqlite::open(&path).err().unwrap();
        assert!(e.to_string().contains("upgrade drover"), "{e}");
    }
}
