//! Confirming a new generation over a fresh connection: the proof that a new
//! SSH login still works after the change (magic rollback's other half: the
//! agent reverts by itself when no confirmation comes in time).

use std::time::Instant;

use drover_proto::{Request, Response};
use drover_spec::Host;

use super::backoff::backoff;
use super::error::HostError;
use super::job::Job;

/// Confirm over a fresh connection: proof that a new SSH login still works
/// after the change. Retried until shortly before the agent's deadline.
pub(super) async fn confirm(job: &Job, host: &Host, generation: u64) -> Result<(), HostError> {
    let deadline = Instant::now() + job.confirm_timeout.unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res: Result<Response, HostError> = async {
            // Never through the resident: its held session proves nothing
            // about whether a new login works after the change.
            let mut c = job.transport.connect_fresh(host, job.timeouts).await?;
            let reply = c.link.call(&Request::Confirm { generation }, &mut |_| {}).await?;
            c.close().await;
            Ok(reply)
        }
        .await;
        match res.map(confirmed) {
            Ok(done) => return done,
            Err(e) if e.is_transient() && Instant::now() + backoff(attempt) < deadline => {
                tokio::time::sleep(backoff(attempt)).await
            }
            Err(e) => return Err(HostError::Unconfirmed { generation, cause: e.to_string() }),
        }
    }
}

/// The agent's reply to `Confirm { generation }`: done, or why the
/// generation is no longer live (typed: replaced by another controller's
/// rollback is not "confirmation came too late").
pub(super) fn confirmed(reply: Response) -> Result<(), HostError> {
    match reply {
        Response::Confirmed { .. } => Ok(()),
        Response::NotConfirmed { generation, current, why } => {
            Err(HostError::NotConfirmed { generation, current, why })
        }
        other => Err(HostError::unexpected("Confirm", &other)),
    }
}
