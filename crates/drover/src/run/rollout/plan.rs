//! A rollout's plan as stored (batches and policy) and its report.

use drover_spec::RolloutPolicy;
use serde::{Deserialize, Serialize};

use crate::host::HostReport;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub batches: Vec<Vec<String>>,
    pub policy: RolloutPolicy,
}

#[derive(Debug, Serialize)]
pub struct BatchReport {
    pub index: usize,
    pub hosts: Vec<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub reports: Vec<HostReport>,
    pub reverted: Vec<HostReport>,
}

#[derive(Debug, Serialize)]
pub struct RolloutReport {
    pub rollout: i64,
    /// Done, failed, aborted or paused (serialized as the store spells it).
    pub status: drover_state::RolloutStatus,
    pub batches: Vec<BatchReport>,
}
