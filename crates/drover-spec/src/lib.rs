//! The drover project format and the per-host compiler.
//!
//! It holds the project's files as types (settings, inventory, roles,
//! services, layers, rollout and alert rules, the package lock), their
//! validation with file-and-line diagnostics, and the compiler from one
//! host and its facts to a manifest. It imports only drover-proto (the
//! manifest it produces) and drover-secrets (secrets in templates): never
//! the controller, the state store, the SSH transport or an async runtime.
//! It reads the project and writes nothing but `drover.lock`
//! (`drover packages lock`); it opens no network connection.
//!
//! A project is a directory: `drover.toml`, `inventory.toml` and/or
//! `inventory.csv`, `roles/*.toml`, `services/*.toml`, `layers/<layer>/…`.
//! [`Project::load`] reads and validates all of it up front, so a mistake is
//! reported (file, line, what to do) before any host is contacted;
//! [`Project::compile`] turns one host plus its facts into a
//! [`drover_proto::Manifest`].

// `SpecError` carries the offending file's text so miette can show the
// line; it is built once, on the way out, so its size costs nothing that
// matters and boxing it would only add noise at every `?`.
#![allow(clippy::result_large_err)]

pub mod alert;
mod connect;
pub mod container;
mod diag;
mod duration;
mod files;
mod fleet;
pub mod instances;
mod inventory;
pub mod jump;
mod layers;
mod limits;
pub mod lock;
mod project;
mod read;
mod render;
pub mod rollout;
mod secrets;
pub mod setup;
pub mod ssh_config;
pub mod state;
mod units;

pub use alert::{AlertFormat, AlertOn, AlertRule};
pub use connect::{Provenance, SshSettings};
pub use diag::SpecError;
pub use duration::parse_duration;
pub use files::ReconcilePolicy;
pub use instances::{Endpoints, Instance};
pub use inventory::{Auth, Host};
pub use jump::JumpHop;
pub use limits::Limits;
pub use project::{BlobSource, Compiled, Project, Settings};
pub use rollout::RolloutPolicy;
