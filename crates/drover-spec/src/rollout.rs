//! Rollout policy: how `drover rollout` walks a fleet batch by batch.
//!
//! Declared as `[rollout]` in a role file (used when a rollout targets that
//! role) or in `drover.toml` (the project default); command-line flags
//! override single fields. Validated at load time like every other file.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::SpecError;
use crate::duration::parse_duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RolloutFile {
    /// Hosts per batch: a number, or a percentage string like "25%".
    pub batch: Option<Spanned<toml::Value>>,
    /// Size of a first, canary batch (0: none).
    pub canary: Option<usize>,
    /// Never more hosts than this updating at once (caps the batch).
    pub max_unavailable: Option<usize>,
    /// Failed hosts / batch size above which the rollout stops (0.0: any failure stops it).
    pub max_failure_ratio: Option<f64>,
    pub delay: Option<Spanned<String>>,
    /// "stop-first" (services stopped before new files are in place) or "start-first".
    pub order: Option<Spanned<String>>,
    /// After a batch is applied, how long its hosts must stay healthy.
    pub min_healthy_time: Option<Spanned<String>>,
    /// Revert the hosts of a failed batch to their previous generation.
    pub revert_failed_batch: Option<bool>,
    /// Reboot each host after activation and confirm the generation only
    /// once it is back and healthy (magic rollback across the reboot).
    pub reboot: Option<bool>,
    pub cluster_check: Option<ClusterCheckFile>,
    #[serde(default)]
    pub hooks: HooksFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterCheckFile {
    pub host: String,
    pub command: String,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<u32>,
    pub interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HooksFile {
    pub before: Option<HostCommand>,
    pub after: Option<HostCommand>,
    pub before_host: Option<String>,
    pub after_host: Option<String>,
}

/// A command run on one named host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCommand {
    pub host: String,
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum BatchSize {
    Count(usize),
    Percent(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Order {
    StopFirst,
    StartFirst,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterCheck {
    pub host: String,
    pub command: String,
    pub timeout: Duration,
    pub retries: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hooks {
    /// Once, on the named host, before the first batch.
    pub before: Option<HostCommand>,
    /// Once, on the named host, after the last batch succeeded. Not run when
    /// the rollout fails: a maintenance flag stays set while you look.
    pub after: Option<HostCommand>,
    /// On each host, before it is updated (e.g. take it out of a balancer).
    pub before_host: Option<String>,
    /// On each host, after it is updated and healthy.
    pub after_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    pub batch: BatchSize,
    pub canary: usize,
    pub max_unavailable: Option<usize>,
    pub max_failure_ratio: f64,
    pub delay: Duration,
    pub order: Order,
    pub min_healthy_time: Duration,
    pub revert_failed_batch: bool,
    /// Reboot after activation (`reboot = true`; `--reboot` on the command
    /// line): see `docs/operations.md`, "Reboots".
    #[serde(default)]
    pub reboot: bool,
    pub cluster_check: Option<ClusterCheck>,
    pub hooks: Hooks,
}

impl Default for RolloutPolicy {
    fn default() -> RolloutPolicy {
        RolloutPolicy {
            batch: BatchSize::Count(1),
            canary: 0,
            max_unavailable: None,
            max_failure_ratio: 0.0,
            delay: Duration::ZERO,
            order: Order::StartFirst,
            min_healthy_time: Duration::ZERO,
            revert_failed_batch: true,
            reboot: false,
            cluster_check: None,
            hooks: Hooks::default(),
        }
    }
}

pub fn parse_batch(v: &toml::Value) -> Result<BatchSize, String> {
    match v {
        toml::Value::Integer(n) if *n > 0 => Ok(BatchSize::Count(usize::try_from(*n).map_err(|e| e.to_string())?)),
        toml::Value::String(s) => parse_batch_str(s),
        _ => Err("batch must be a positive number of hosts or a percentage like \"25%\"".into()),
    }
}

pub fn parse_batch_str(s: &str) -> Result<BatchSize, String> {
    let bad = || format!("{s:?}: batch must be a positive number of hosts or a percentage like \"25%\"");
    match s.strip_suffix('%') {
        Some(p) => {
            p.trim().parse::<u32>().ok().filter(|p| (1..=100).contains(p)).map(BatchSize::Percent).ok_or_else(bad)
        }
        None => s.trim().parse::<usize>().ok().filter(|n| *n > 0).map(BatchSize::Count).ok_or_else(bad),
    }
}

pub fn parse_order(s: &str) -> Result<Order, String> {
    match s {
        "stop-first" => Ok(Order::StopFirst),
        "start-first" => Ok(Order::StartFirst),
        _ => Err(format!("{s:?}: order is \"stop-first\" or \"start-first\"")),
    }
}

/// Resolve a `[rollout]` table (file `name`, text `text` for diagnostics).
pub fn resolve(f: &RolloutFile, name: &str, text: &str) -> Result<RolloutPolicy, SpecError> {
    let at = |span: std::ops::Range<usize>, msg: String, help: &str| SpecError::at(name, text, span, msg, "here", help);
    let dur = |v: &Option<Spanned<String>>, d: Duration| -> Result<Duration, SpecError> {
        match v {
            None => Ok(d),
            Some(s) => parse_duration(s.get_ref()).map_err(|m| at(s.span(), m, "write e.g. 30s or 2m")),
        }
    };
    let d = RolloutPolicy::default();
    let batch = match &f.batch {
        None => d.batch,
        Some(b) => parse_batch(b.get_ref()).map_err(|m| at(b.span(), m, "e.g. batch = 2 or batch = \"25%\""))?,
    };
    let order = match &f.order {
        None => d.order,
        Some(o) => {
            parse_order(o.get_ref()).map_err(|m| at(o.span(), m, "order = \"stop-first\" or \"start-first\""))?
        }
    };
    let ratio = f.max_failure_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(SpecError::at(
            name,
            text,
            0..0,
            "max-failure-ratio must be between 0.0 and 1.0",
            "here",
            "e.g. 0.25",
        ));
    }
    let cluster_check = match &f.cluster_check {
        None => None,
        Some(c) => Some(ClusterCheck {
            host: c.host.clone(),
            command: c.command.clone(),
            timeout: dur(&c.timeout, Duration::from_secs(30))?,
            retries: c.retries.unwrap_or(3).max(1),
            interval: dur(&c.interval, Duration::from_secs(2))?,
        }),
    };
    Ok(RolloutPolicy {
        batch,
        canary: f.canary.unwrap_or(0),
        max_unavailable: f.max_unavailable,
        max_failure_ratio: ratio,
        delay: dur(&f.delay, d.delay)?,
        order,
        min_healthy_time: dur(&f.min_healthy_time, d.min_healthy_time)?,
        revert_failed_batch: f.revert_failed_batch.unwrap_or(true),
        reboot: f.reboot.unwrap_or(false),
        cluster_check,
        hooks: Hooks {
            before: f.hooks.before.clone(),
            after: f.hooks.after.clone(),
            before_host: f.hooks.before_host.clone(),
            after_host: f.hooks.after_host.clone(),
        },
    })
}

impl RolloutPolicy {
    /// Split `hosts` (in order) into batches: the canary batch first, then
    /// batches of the policy's size, capped by `max_unavailable`.
    pub fn batches(&self, hosts: &[String]) -> Vec<Vec<String>> {
        let n = hosts.len();
        let mut size = match self.batch {
            BatchSize::Count(c) => c,
            BatchSize::Percent(p) => (n * p as usize).div_ceil(100),
        }
        .max(1);
        if let Some(m) = self.max_unavailable {
            size = size.min(m.max(1));
        }
        let mut out = Vec::new();
        let mut rest = hosts;
        if self.canary > 0 && !rest.is_empty() {
            let c = self.canary.min(rest.len());
            out.push(rest[..c].to_vec());
            rest = &rest[c..];
        }
        out.extend(rest.chunks(size).map(<[String]>::to_vec));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("h{i}")).collect()
    }

    #[test]
    fn batches_with_canary_percent_and_cap() {
        let p = RolloutPolicy { batch: BatchSize::Count(2), ..Default::default() };
        assert_eq!(p.batches(&hosts(6)).len(), 3);
        let p = RolloutPolicy { batch: BatchSize::Count(2), canary: 1, ..Default::default() };
        let b = p.batches(&hosts(6));
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2, 2, 1]);
        let p = RolloutPolicy { batch: BatchSize::Percent(25), ..Default::default() };
        assert_eq!(p.batches(&hosts(10)).iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        let p = RolloutPolicy { batch: BatchSize::Count(5), max_unavailable: Some(2), ..Default::default() };
        assert_eq!(p.batches(&hosts(4)).len(), 2);
    }

    #[test]
    fn parse_errors_say_what_is_accepted() {
        assert_eq!(parse_batch_str("25%").unwrap(), BatchSize::Percent(25));
        assert!(parse_batch_str("0").is_err());
        assert!(parse_batch_str("150%").unwrap_err().contains("percentage"));
        assert!(parse_order("sideways").unwrap_err().contains("stop-first"));
    }
}
