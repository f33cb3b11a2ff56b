//! One host, brought to its desired state: the session a run drives per
//! host (connect → hello → desired state → diff → ship → activate → confirm,
//! and the reboot step), the delivery strategies it ships with (direct from
//! the project, from a bundle, through peer relays), and the report it
//! returns.
//!
//! Layer rule: `host` imports `transport` and the base modules
//! (`progress`, `phases`, `human`, `agent_bin`, `store`, …), never `run`,
//! `commands` or `serve`: it knows nothing of batches, runs or their record.

mod backoff;
pub mod bundle_source;
mod confirm;
pub mod delta;
mod desired;
pub mod diff;
mod error;
mod job;
pub mod reboot;
pub mod relay;
mod relay_deliver;
mod report;
mod session;
pub mod ship;
mod ship_delta;
mod source;

pub use desired::is_current;
pub use error::HostError;
pub use job::{Activations, Job, Mode, RebootPlan};
pub use report::{failure_lines, parse_restart, restart_text, HostReport, Outcome};
pub use session::run_host;
pub use ship::ChunkCache;
pub use source::{PackedChunks, StateSource};
