//! The one scheduler: every kind of run (apply, rollback, plan, rollout and
//! reboot batches, workers, serve's checks and healing, and the small
//! fleet-wide operations of status, exec, logs and drain) hands its hosts to
//! [`each`], which spawns a host's task only when a slot is free.

use std::future::Future;
use std::sync::Arc;

use drover_spec::Host;

use super::spec::RunSpec;
use crate::host::{run_host, ChunkCache, HostReport, Outcome};
use crate::progress::Progress;

/// Run `f` on every host, at most `parallel` at once; results in host order.
///
/// A host's task is spawned only when a slot is free, so at most `parallel`
/// task futures exist at a time: spawning all of them up front (each waiting
/// on a semaphore) cost about 10 KiB per host before any work began, 100 MB
/// at 10,000 hosts. Slots refill as any host finishes (not in order), so one
/// slow host does not hold up the rest. A task that panicked is that host's
/// error, not a missing line.
pub async fn each<T, F, Fut>(hosts: Vec<Host>, parallel: usize, f: F) -> Vec<(String, Result<T, String>)>
where
    T: Send + 'static,
    F: Fn(Host) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    use futures_util::StreamExt;
    let mut out: Vec<(String, Result<T, String>)> =
        hosts.iter().map(|h| (h.name.clone(), Err("not reached".to_string()))).collect();
    let mut done = futures_util::stream::iter(hosts.into_iter().enumerate())
        .map(move |(i, h)| {
            let task = tokio::spawn(f.clone()(h));
            async move { (i, task.await.unwrap_or_else(|e| Err(crate::tasks::failure(e)))) }
        })
        .buffer_unordered(parallel.max(1));
    while let Some((i, r)) = done.next().await {
        out[i].1 = r;
    }
    out
}

/// Every host through its session ([`run_host`]), reports sorted by host
/// name (h2 before h10).
pub async fn sessions(spec: &RunSpec, hosts: Vec<Host>, progress: Progress) -> Vec<HostReport> {
    // One per run: every host's copy of a blob is compressed once.
    let chunks = Arc::new(ChunkCache::new(crate::host::ship::CACHE_BYTES));
    let (job, fence, p) = (Arc::new(spec.job.clone()), spec.fence.clone(), progress.clone());
    let results = each(hosts, spec.parallel, move |host| {
        let (job, chunks, fence, progress) = (job.clone(), chunks.clone(), fence.clone(), p.clone());
        async move {
            let hp = progress.host(&host.name);
            if let Some(why) = fence.lost() {
                hp.finish(Outcome::Skipped);
                let mut r = HostReport::new(&host.name);
                r.outcome = Outcome::Skipped;
                r.error = Some(format!("not started: {why}"));
                return Ok(r);
            }
            let report = run_host(&job, &chunks, &host, &hp).await;
            hp.finish(report.outcome);
            Ok(report)
        }
    })
    .await;
    let mut out: Vec<HostReport> = results
        .into_iter()
        .map(|(name, r)| {
            r.unwrap_or_else(|e| {
                progress.host(&name).finish(Outcome::Failed);
                let mut r = HostReport::new(&name);
                r.outcome = Outcome::Failed;
                r.error = Some(e);
                r
            })
        })
        .collect();
    out.sort_by_cached_key(|r| natural_key(&r.host));
    out
}

/// Sort h2 before h10.
pub fn natural_key(s: &str) -> (String, u64, String) {
    let i = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let j = s[i..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |k| i + k);
    (s[..i].to_string(), s[i..j].parse().unwrap_or(0), s[j..].to_string())
}
