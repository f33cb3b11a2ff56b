//! Running one small operation on many hosts at once (status, exec, logs,
//! drain): connect, do it, close; errors become per-host results, never a
//! hang — every step has a deadline.

use std::future::Future;
use std::time::Duration;

use drover_spec::{Host, Project};

use crate::transport::{Connection, Timeouts, Transport};

#[derive(Clone)]
pub struct Fleet {
    pub transport: Transport,
    pub timeouts: Timeouts,
    pub parallel: usize,
}

impl Fleet {
    pub fn new(project: &Project, simulate: Option<&std::path::Path>) -> anyhow::Result<Fleet> {
        Ok(Fleet {
            transport: Transport::for_hosts(simulate, None)?.persistent(project),
            timeouts: Timeouts { connect: project.settings.connect_timeout, op: super::spec::OP_TIMEOUT },
            parallel: project.settings.parallel,
        })
    }

    /// Connect to every host and run `f` on the connection (up to
    /// `parallel` at once, see [`super::schedule::each`]); results in host order.
    pub async fn each<T, F, Fut>(&self, hosts: &[Host], f: F) -> Vec<(String, Result<T, String>)>
    where
        T: Send + 'static,
        F: Fn(Host, Connection) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let fleet = self.clone();
        super::schedule::each(hosts.to_vec(), self.parallel, move |h| {
            let (f, fleet) = (f.clone(), fleet.clone());
            async move {
                match fleet.transport.connect(&h, fleet.timeouts).await {
                    Ok(c) => f(h, c).await,
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }
}

/// What a command run on a host answered (`Request::Exec`).
#[derive(Debug, Clone)]
pub struct Executed {
    /// `None`: killed by a signal, or at its timeout.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl Fleet {
    /// `command` through `/bin/sh -c` as root on every host, each given
    /// `timeout`; per host, what it answered or why it could not be run.
    pub async fn exec(
        &self,
        hosts: &[Host],
        command: &str,
        timeout: Duration,
    ) -> Vec<(String, Result<Executed, String>)> {
        let all = hosts.iter().map(|h| (h.name.clone(), command.to_string())).collect();
        self.exec_each(hosts, all, timeout).await
    }

    /// [`Fleet::exec`] with each host's own command (`commands` by host
    /// name: an image service's container is named per instance).
    pub async fn exec_each(
        &self,
        hosts: &[Host],
        commands: std::collections::HashMap<String, String>,
        timeout: Duration,
    ) -> Vec<(String, Result<Executed, String>)> {
        let commands = std::sync::Arc::new(commands);
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.each(hosts, move |h, mut c| {
            let cmd = commands.get(&h.name).cloned().unwrap_or_default();
            async move {
                // The agent's own limit comes first; this one only catches a dead link.
                c.link.set_timeout(timeout + Duration::from_secs(30));
                let r = c
                    .link
                    .call(&drover_proto::Request::Exec { command: cmd, timeout_ms: ms }, &mut |_| {})
                    .await
                    .map_err(|e| e.to_string());
                c.close().await;
                match r? {
                    drover_proto::Response::ExecResult { code, stdout, stderr, timed_out } => {
                        Ok(Executed { code, stdout, stderr, timed_out })
                    }
                    other => Err(format!("unexpected reply {other:?}")),
                }
            }
        })
        .await
    }
}

/// A tokio runtime for a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Drain (stop services, mark) or undrain hosts, and record the mark in the
/// state store for the hosts that answered; per host, the services stopped
/// or started, or why not.
pub async fn drain(
    dir: &std::path::Path,
    fleet: &Fleet,
    hosts: &[Host],
    on: bool,
    reason: &str,
) -> anyhow::Result<Vec<(String, Result<Vec<String>, String>)>> {
    use drover_proto::{Request, Response};
    let req = if on { Request::Drain { reason: reason.into() } } else { Request::Undrain };
    let results = fleet
        .each(hosts, move |_h, mut c| {
            let req = req.clone();
            async move {
                let r = c.link.call(&req, &mut |_| {}).await.map_err(|e| e.to_string());
                c.close().await;
                match r? {
                    Response::Drained { services, .. } => Ok(services),
                    other => Err(format!("unexpected reply {other:?}")),
                }
            }
        })
        .await;
    let (dir, reason, marks) = (
        dir.to_path_buf(),
        reason.to_string(),
        results.iter().filter(|(_, r)| r.is_ok()).map(|(h, _)| h.clone()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut store = crate::store::open(&dir)?;
        for h in marks {
            store.set_drained(&h, on.then_some(reason.as_str()))?;
        }
        Ok(())
    })
    .await??;
    Ok(results)
}

/// Send a `Logs` request on `c` and pass each batch of lines to `tx` as
/// `(host, lines)` until the agent says the past is done (or, following,
/// until `tx`'s receiver goes away).
pub async fn stream_logs(
    c: &mut Connection,
    req: &drover_proto::Request,
    follow: bool,
    host: &str,
    tx: &tokio::sync::mpsc::Sender<(String, Vec<drover_proto::LogLine>)>,
) -> Result<(), String> {
    use drover_proto::Response;
    c.link.call_no_wait(req).await.map_err(|e| e.to_string())?;
    if follow {
        // A quiet service is not a dead link: wait indefinitely.
        c.link.set_timeout(Duration::from_secs(365 * 24 * 3600));
    }
    loop {
        match c.link.recv().await.map_err(|e| e.to_string())? {
            Response::LogLines(lines) => {
                if tx.send((host.to_string(), lines)).await.is_err() {
                    return Ok(());
                }
            }
            Response::LogEnd => return Ok(()),
            Response::Error { message } => return Err(message),
            other => return Err(format!("unexpected reply {other:?}")),
        }
    }
}
