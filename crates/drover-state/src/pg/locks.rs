//! Host locks on PostgreSQL: rows with a lease.
//!
//! Several controllers on several machines share the database, so a pid
//! says nothing about whether a holder lives. Instead each lock row has
//! `expires_ms` (the server's clock: controllers' clocks may disagree); the
//! holder renews it every third of the lease from a background thread while
//! its [`HostLock`] lives, and any other run may take a row whose lease has
//! expired. Taking locks is serialised by a transaction-scoped advisory
//! lock, so two controllers racing for overlapping hosts never both win
//! (all or none of a run's hosts is taken).

use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::conn::{Conn, Fail};
use super::migrations::LOCKS_KEY;
use super::Pg;
use crate::{machine, now_ms, HostLock, LockHolder, StateError};

/// The server's clock, in ms since the epoch.
pub(super) const SERVER_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Renews a lock's lease while it lives; dropping it stops the renewal and
/// (unless [`Store::unlock_hosts`](crate::Store::unlock_hosts) released the
/// hosts already) releases them.
pub(crate) struct Lease {
    /// Set by the renewal thread when a renewal fails (see [`crate::LeaseWatch`]).
    pub(crate) lost: Arc<OnceLock<String>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    conn: Conn,
    run_id: i64,
    hosts: Vec<String>,
    released: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.released {
            // Waited for, not queued: a command that fails after locking
            // drops its run and exits at once, and must not leave its hosts
            // locked for a whole lease.
            let (run_id, hosts) = (self.run_id, std::mem::take(&mut self.hosts));
            let _ = self.conn.call(move |c| {
                c.execute("DELETE FROM host_locks WHERE host = ANY($1) AND run_id = $2", &[&hosts, &run_id])?;
                Ok(())
            });
        }
    }
}

fn renew_every(
    conn: Conn,
    run_id: i64,
    hosts: Vec<String>,
    lease: Duration,
    lost: Arc<OnceLock<String>>,
) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let thread = std::thread::Builder::new()
        .name("drover-lock-lease".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(lease / 3) {
                let hs = hosts.clone();
                let renewed = conn.call(move |c| {
                    let sql = format!(
                        "UPDATE host_locks SET expires_ms = {SERVER_NOW_MS} + $1 WHERE host = ANY($2) AND run_id = $3"
                    );
                    Ok(c.execute(&sql, &[&lease_ms, &hs, &run_id])?)
                });
                match renewed {
                    Ok(n) if n as usize == hosts.len() => {}
                    // Stalled past the lease (or the database was away): another
                    // run may have taken hosts over. The agent's own lock still
                    // keeps two sessions off one host; say it loudly.
                    Ok(n) => {
                        let why = format!(
                            "run {run_id} lost the lock of {} host(s): its lease expired before renewal",
                            hosts.len() - n as usize
                        );
                        if lost.set(why.clone()).is_ok() {
                            eprintln!("warning: {why}");
                        }
                    }
                    Err(e) => {
                        if lost.set(format!("renewing its host locks failed: {e}")).is_ok() {
                            eprintln!("warning: run {run_id}: renewing host locks failed: {e}");
                        }
                    }
                }
            }
        })
        .expect("spawn the lock lease thread");
    (stop, thread)
}

impl Pg {
    pub(super) fn lock_hosts(&mut self, run_id: i64, hosts: &[String]) -> Result<HostLock, StateError> {
        let mut hs = hosts.to_vec();
        hs.sort();
        hs.dedup();
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let (pid, me) = (i64::from(std::process::id()), machine());
        let taken = hs.clone();
        self.conn.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCKS_KEY])?;
            let now: i64 = tx.query_one(&format!("SELECT {SERVER_NOW_MS}"), &[])?.get(0);
            let rows = tx.query(
                "SELECT l.host, l.run_id, l.pid, l.machine, COALESCE(r.command, '?'), l.since_ms
                 FROM host_locks l LEFT JOIN runs r ON r.id = l.run_id
                 WHERE l.host = ANY($1) AND l.run_id <> $2 AND l.expires_ms > $3 ORDER BY l.host",
                &[&taken, &run_id, &now],
            )?;
            if !rows.is_empty() {
                let held = rows
                    .iter()
                    .map(|r| LockHolder {
                        host: r.get(0),
                        run_id: r.get(1),
                        pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                        machine: r.get(3),
                        command: r.get(4),
                        since_ms: r.get(5),
                    })
                    .collect();
                return Err(Fail::State(StateError::Locked(held)));
            }
            tx.execute(
                "INSERT INTO host_locks (host, run_id, pid, machine, since_ms, expires_ms)
                 SELECT h, $2, $3, $4, $5, $6 FROM UNNEST($1::text[]) AS h
                 ON CONFLICT (host) DO UPDATE SET run_id = EXCLUDED.run_id, pid = EXCLUDED.pid,
                   machine = EXCLUDED.machine, since_ms = EXCLUDED.since_ms, expires_ms = EXCLUDED.expires_ms",
                &[&taken, &run_id, &pid, &me, &now_ms(), &(now + lease_ms)],
            )?;
            tx.commit()?;
            Ok(())
        })?;
        let lost = Arc::new(OnceLock::new());
        let (stop, thread) = renew_every(self.conn.clone(), run_id, hs.clone(), self.lease, lost.clone());
        let lease = Lease {
            lost,
            stop: Some(stop),
            thread: Some(thread),
            conn: self.conn.clone(),
            run_id,
            hosts: hs,
            released: false,
        };
        Ok(HostLock { run_id, hosts: hosts.to_vec(), lease: Some(lease) })
    }

    pub(super) fn unlock_hosts(&mut self, mut lock: HostLock) -> Result<(), StateError> {
        let (run_id, hosts) = (lock.run_id, lock.hosts.clone());
        if let Some(l) = lock.lease.as_mut() {
            l.released = true;
        }
        // Stop renewing first: a renewal after the delete would be harmless
        // (it updates nothing) but would warn.
        drop(lock.lease.take());
        self.conn.call(move |c| {
            c.execute("DELETE FROM host_locks WHERE host = ANY($1) AND run_id = $2", &[&hosts, &run_id])?;
            Ok(())
        })
    }
}
