//! One module per verb: parse its arguments, build and call a run (or a
//! lower layer's function), print the result. Dispatch is in `crate::main`.

pub mod bundle;
pub mod day2;
pub mod deploy;
pub mod image;
pub mod import;
pub mod init;
pub mod instances;
pub mod inventory;
pub mod lab;
pub mod logs;
pub mod packages;
pub mod reboot;
pub mod render;
pub mod resident;
pub mod rollout;
pub mod secret;
pub mod serve;
pub mod state;
pub mod status;
pub mod trust;
mod trust_jump;
pub mod volume;
pub mod worker;
