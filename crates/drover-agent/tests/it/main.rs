//! The agent's integration tests, one binary (`autotests = false` in
//! Cargo.toml): the real `drover-agent` binary driven over its stdin/stdout
//! as the controller drives it, against temporary target roots.
//!
//! - `agent`: apply, no-op, drift, rollback, confirmation, transfers, and
//!   every failure path the transition machinery handles (SIGKILL at each
//!   hook point, corrupt blobs, escapes, a silent controller);
//! - `gate`: the health gate on a simulated host (the fake supervisor made
//!   to crash-loop): a service not running fails it whatever its probe
//!   says, with the supervisor's state and log lines; a changed health
//!   check is run;
//! - `boot`: magic rollback across a reboot (the `boot` verb and the
//!   watchdog), on a simulated host that never reboots;
//! - `space`: a full, read-only or failing filesystem under a transition
//!   (tmpfs mounts: root only): refused early or rolled back to one whole
//!   generation, named with its free and needed bytes, then converging;
//! - `delta`: a changed blob as a delta against the live generation's,
//!   and a damaged one reported by `Missing`, then sent whole;
//! - `readonly`: a read-only session (`drover plan`) reads, refuses
//!   changes, and creates nothing;
//! - `support`: the client and the manifests they share.

mod agent;
mod boot;
mod confirm;
mod delta;
mod detach;
mod gate;
mod readonly;
mod space;
mod start_order;
mod support;
