//! Driving a rollout's batches: each through the scheduler (or workers),
//! then its gates (min-healthy-time, health re-check, hooks, cluster check),
//! and a failed batch's revert.

use std::sync::Arc;
use std::time::Duration;

use drover_proto::{Request, Response};
use drover_spec::rollout::{HostCommand, Order};
use drover_spec::{Host, Project, RolloutPolicy};

use super::plan::{BatchReport, Plan, RolloutReport};
use crate::host::{HostReport, Mode, Outcome};
use crate::progress::Progress;
use crate::run::fleet::Fleet;
use crate::run::record::Run;
use crate::run::schedule::sessions;
use crate::run::spec::RunSpec;

pub struct Runner<'a> {
    pub project: Arc<Project>,
    pub fleet: Fleet,
    pub spec: RunSpec,
    pub run: &'a mut Run,
    pub rollout_id: i64,
    pub json: bool,
    /// Hand each batch to workers (`--workers`) instead of running it here.
    /// The gates between batches (health, hooks, cluster check) and a
    /// failed batch's revert stay with this controller.
    pub workers: Option<crate::run::workers::Workers>,
}

impl Runner<'_> {
    fn hosts(&self, names: &[String]) -> Vec<Host> {
        self.project.hosts.iter().filter(|h| names.contains(&h.name)).cloned().collect()
    }

    fn say(&self, msg: String) {
        if !self.json {
            eprintln!("{msg}");
        }
    }

    /// Run `plan` from batch `from`.
    pub async fn run(&mut self, plan: &Plan, from: usize) -> anyhow::Result<RolloutReport> {
        let mut report =
            RolloutReport { rollout: self.rollout_id, status: drover_state::RolloutStatus::Done, batches: vec![] };
        let policy = &plan.policy;
        if from == 0 {
            if let Some(hook) = &policy.hooks.before {
                self.say(format!("hook before: {} on {}", hook.command, hook.host));
                self.hook(hook).await.map_err(|e| anyhow::anyhow!("before hook failed, nothing was changed: {e}"))?;
            }
        }
        for (i, names) in plan.batches.iter().enumerate().skip(from) {
            if let Some(why) = self.run.watch().lost() {
                let in_flight = format!("batches before {} are done; `drover rollout resume` continues", i + 1);
                return Err(crate::run::StoreLost {
                    who: format!("rollout {}", self.rollout_id),
                    reason: why.into(),
                    in_flight,
                }
                .into());
            }
            if let Some(stop) = self.wait_while_paused().await? {
                report.status = stop;
                return Ok(report);
            }
            self.say(format!("batch {}/{}: {}", i + 1, plan.batches.len(), names.join(", ")));
            let batch = self.batch(i, names, policy).await?;
            let ok = batch.outcome == "ok";
            self.say(format!(
                "batch {}/{}: {}{}",
                i + 1,
                plan.batches.len(),
                batch.outcome,
                batch.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ));
            report.batches.push(batch);
            if !ok {
                self.run.store.update_rollout(self.rollout_id, i as i64, drover_state::RolloutStatus::Failed)?;
                report.status = drover_state::RolloutStatus::Failed;
                return Ok(report);
            }
            self.run.store.advance_rollout(self.rollout_id, i as i64 + 1)?;
            if i + 1 < plan.batches.len() && !policy.delay.is_zero() {
                self.sleep_checking(policy.delay).await?;
            }
        }
        if let Some(hook) = &policy.hooks.after {
            self.say(format!("hook after: {} on {}", hook.command, hook.host));
            if let Err(e) = self.hook(hook).await {
                self.run.store.update_rollout(
                    self.rollout_id,
                    plan.batches.len() as i64,
                    drover_state::RolloutStatus::Failed,
                )?;
                report.status = drover_state::RolloutStatus::Failed;
                report.batches.push(BatchReport {
                    index: plan.batches.len(),
                    hosts: vec![],
                    outcome: "failed".into(),
                    reason: Some(format!("after hook: {e}")),
                    reports: vec![],
                    reverted: vec![],
                });
                return Ok(report);
            }
        }
        self.run.store.update_rollout(self.rollout_id, plan.batches.len() as i64, drover_state::RolloutStatus::Done)?;
        Ok(report)
    }

    async fn batch(&mut self, index: usize, names: &[String], policy: &RolloutPolicy) -> anyhow::Result<BatchReport> {
        let hosts = self.hosts(names);
        let mut b = BatchReport {
            index,
            hosts: names.to_vec(),
            outcome: "ok".into(),
            reason: None,
            reports: vec![],
            reverted: vec![],
        };
        if let Some(cmd) = &policy.hooks.before_host {
            if let Err(e) = self.each_exec(&hosts, cmd).await {
                b.outcome = "failed".into();
                b.reason = Some(format!("before-host hook: {e}"));
                return Ok(b);
            }
        }
        let reports = match &self.workers {
            // The workers record each host's result themselves.
            Some(w) => tokio::task::block_in_place(|| w.run(self.run, names, self.json))?,
            None => {
                let mut spec = self.spec.clone_for(Mode::Apply);
                spec.job.stop_first = policy.order == Order::StopFirst;
                let reports = sessions(&spec, hosts.clone(), Progress::new(hosts.len(), !self.json)).await;
                for r in &reports {
                    self.run.record(r)?;
                }
                reports
            }
        };
        let failed: Vec<&HostReport> = reports.iter().filter(|r| r.outcome.is_failure()).collect();
        let mut reason = (!failed.is_empty()).then(|| {
            failed
                .iter()
                .map(|r| format!("{}: {}", r.host, r.error.as_deref().unwrap_or(r.outcome.as_str())))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let ratio = failed.len() as f64 / names.len().max(1) as f64;
        let mut batch_failed = !failed.is_empty() && ratio > policy.max_failure_ratio;
        if !batch_failed {
            if !policy.min_healthy_time.is_zero() {
                tokio::time::sleep(policy.min_healthy_time).await;
            }
            if let Err(e) = self.still_healthy(&hosts).await {
                batch_failed = true;
                reason = Some(e);
            }
        }
        if !batch_failed {
            if let Some(cmd) = &policy.hooks.after_host {
                if let Err(e) = self.each_exec(&hosts, cmd).await {
                    batch_failed = true;
                    reason = Some(format!("after-host hook: {e}"));
                }
            }
        }
        if !batch_failed {
            if let Some(cc) = &policy.cluster_check {
                if let Err(e) = self.cluster_check(cc).await {
                    batch_failed = true;
                    reason = Some(format!("cluster check on {}: {e}", cc.host));
                }
            }
        }
        b.reason = reason;
        b.reports = reports;
        if batch_failed {
            b.outcome = "failed".into();
            if policy.revert_failed_batch {
                let changed: Vec<Host> = hosts
                    .iter()
                    .filter(|h| b.reports.iter().any(|r| r.host == h.name && r.outcome == Outcome::Changed))
                    .cloned()
                    .collect();
                if !changed.is_empty() {
                    self.say(format!("reverting {} updated host(s) of the failed batch", changed.len()));
                    let spec = self.spec.clone_for(Mode::Rollback { to: None });
                    b.reverted = sessions(&spec, changed.clone(), Progress::new(changed.len(), !self.json)).await;
                    for r in &b.reverted {
                        self.run.record(r)?;
                    }
                }
            }
        }
        Ok(b)
    }

    /// After `min-healthy-time`: every service of every host still running and healthy.
    async fn still_healthy(&self, hosts: &[Host]) -> Result<(), String> {
        let res = self
            .fleet
            .each(hosts, |_h, mut c| async move {
                let r = c.link.call(&Request::Status, &mut |_| {}).await.map_err(|e| e.to_string());
                c.close().await;
                match r? {
                    Response::Status(s) => Ok(s),
                    other => Err(format!("unexpected {other:?}")),
                }
            })
            .await;
        let mut bad = Vec::new();
        for (h, r) in res {
            match r {
                Ok(s) => {
                    for sv in s.services.iter().filter(|sv| !sv.is_up()) {
                        bad.push(format!("{h}: {} unhealthy ({}; {})", sv.name, sv.state, sv.detail));
                    }
                }
                Err(e) => bad.push(format!("{h}: {e}")),
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    async fn exec(&self, host: &Host, command: &str, timeout: Duration) -> Result<(), String> {
        let res = self.fleet.exec(std::slice::from_ref(host), command, timeout).await;
        match res.into_iter().next().map(|(_, r)| r) {
            None => Err("no result".into()),
            Some(Err(e)) => Err(e),
            Some(Ok(x)) if x.code == Some(0) => Ok(()),
            Some(Ok(x)) if x.timed_out => Err("timed out".into()),
            Some(Ok(x)) => Err(format!("exit {:?}: {}", x.code, String::from_utf8_lossy(&x.stderr).trim())),
        }
    }

    async fn each_exec(&self, hosts: &[Host], command: &str) -> Result<(), String> {
        let mut errs = Vec::new();
        for h in hosts {
            if let Err(e) = self.exec(h, command, Duration::from_secs(120)).await {
                errs.push(format!("{}: {e}", h.name));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    async fn hook(&self, hook: &HostCommand) -> Result<(), String> {
        let host = self
            .project
            .hosts
            .iter()
            .find(|h| h.name == hook.host)
            .ok_or_else(|| format!("hook host {} is not in the inventory", hook.host))?;
        self.exec(host, &hook.command, Duration::from_secs(300)).await
    }

    async fn cluster_check(&self, cc: &drover_spec::rollout::ClusterCheck) -> Result<(), String> {
        let host = self
            .project
            .hosts
            .iter()
            .find(|h| h.name == cc.host)
            .ok_or_else(|| format!("{} is not in the inventory", cc.host))?;
        let mut last = String::new();
        for attempt in 0..cc.retries {
            if attempt > 0 {
                tokio::time::sleep(cc.interval).await;
            }
            match self.exec(host, &cc.command, cc.timeout).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!("`{}` failed {} times: {last}", cc.command, cc.retries))
    }

    /// Between batches: wait while paused; `Some(status)` to stop.
    async fn wait_while_paused(&mut self) -> anyhow::Result<Option<drover_state::RolloutStatus>> {
        use drover_state::RolloutStatus;
        let mut said = false;
        loop {
            // A rollout whose row is gone carries on, as before.
            let status = self.run.store.rollout(self.rollout_id)?.map_or(RolloutStatus::Running, |r| r.status);
            match status {
                RolloutStatus::Paused => {
                    if !said {
                        self.say("paused (drover rollout resume | abort)".into());
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                RolloutStatus::Aborted => return Ok(Some(RolloutStatus::Aborted)),
                RolloutStatus::Running | RolloutStatus::Failed | RolloutStatus::Done => return Ok(None),
            }
        }
    }

    async fn sleep_checking(&mut self, d: Duration) -> anyhow::Result<()> {
        let end = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(250).min(end - tokio::time::Instant::now())).await;
        }
        Ok(())
    }
}
