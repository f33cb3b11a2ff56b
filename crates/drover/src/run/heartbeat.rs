//! A run's heartbeat: a thread with its own connection to the state store
//! that renews the run's lease every third of it while the run lasts, and
//! records each host's activation the moment its agent reports it. A
//! controller killed mid-run leaves a `running` row whose lease runs out;
//! the next run marks it `abandoned` (see [`drover_state::Store::mark_abandoned`]),
//! and `history` still shows the hosts it activated.
//!
//! Its own connection, because the run's main connection belongs to the
//! thread that drives the run, and an activation must be recorded while
//! that thread waits for the rest of the hosts.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use drover_state::{HostResult, Store};

use crate::host::Activations;

enum Beat {
    Activated(Box<HostResult>),
    /// Everything sent before is recorded: then answer.
    Flush(Sender<()>),
    Stop,
}

pub(super) struct Heartbeat {
    tx: Sender<Beat>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Renew run `run_id`'s lease on `store` every third of `lease`.
    pub(super) fn start(mut store: Store, run_id: i64, lease: Duration) -> Heartbeat {
        let (tx, rx) = channel();
        let every = lease / 3;
        let thread = std::thread::spawn(move || {
            let mut rows = Vec::new();
            loop {
                let mut flushed = Vec::new();
                let mut stop = false;
                // What queued up is recorded in one transaction: a fleet
                // activating at once costs a few commits, not one per host.
                let mut beat = rx.recv_timeout(every);
                loop {
                    match beat {
                        Ok(Beat::Activated(row)) => rows.push(*row),
                        Ok(Beat::Flush(ack)) => flushed.push(ack),
                        Ok(Beat::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    match rx.try_recv() {
                        Ok(b) if !stop => beat = Ok(b),
                        _ => break,
                    }
                }
                if !rows.is_empty() {
                    if let Err(e) = store.record_hosts(&rows) {
                        tracing::warn!("run {run_id}: could not record {} host(s)' activation: {e}", rows.len());
                    }
                    rows.clear();
                }
                for ack in flushed {
                    let _ = ack.send(());
                }
                if stop {
                    return;
                }
                if let Err(e) = store.heartbeat(run_id) {
                    tracing::warn!("run {run_id}: could not renew its lease: {e}");
                }
            }
        });
        Heartbeat { tx, thread: Some(thread) }
    }

    /// Wait until every activation reported so far is recorded (before the
    /// hosts' final results are: those must not be overwritten by them).
    pub(super) fn flush(&self) {
        let (ack, done) = channel();
        if self.tx.send(Beat::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Where the run's sessions report activations.
    pub(super) fn activations(&self, run_id: i64) -> Activations {
        let tx = std::sync::Mutex::new(self.tx.clone());
        Activations::new(move |r| {
            if let Ok(row) = super::record::host_result(run_id, r) {
                let _ = tx.lock().map(|tx| tx.send(Beat::Activated(Box::new(row))));
            }
        })
    }
}

impl Drop for Heartbeat {
    /// Stops renewing (what was sent before is recorded first).
    fn drop(&mut self) {
        let _ = self.tx.send(Beat::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
