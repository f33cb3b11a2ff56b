//! The controller's integration tests, as one binary (one link, one
//! process; `cargo test -p drover --test it -- day2::` runs one module).
//!
//! Most drive the real `drover` binary: against simulated hosts (no root
//! needed), or against a lab fleet of real sshd hosts in network
//! namespaces (root needed; every such test brings up a lab of its own,
//! under a name no other test uses, and takes it down). What they share is
//! in `support`; each other module is one subject, named as its file.

#[macro_use]
mod support;

mod accounted;
mod accounts;
mod agent_swap;
mod arch;
mod bundle;
mod bundle_arch;
mod bundle_secrets;
mod compose_import;
mod containers;
mod day2;
mod day_one;
mod delta;
mod disk_full;
mod e2e;
mod faults;
mod fleet;
mod health_gate;
mod history;
mod host_state;
mod images;
mod instances;
mod inventory_import;
mod jump;
mod kinds;
mod lab;
mod lab_containers;
mod lab_kinds;
mod lab_systemd;
mod openrc;
mod p2p_network;
mod packages;
mod persist;
mod phases;
mod plan;
mod reboot;
mod restart_wait;
mod rollout_resume;
mod secrets;
mod security;
mod serve;
mod serve_alerts;
mod serve_faults;
mod serve_runaway;
mod sim;
mod ssh;
mod state_store;
mod systemd;
mod traces;
mod trees;
mod web_cluster;
mod workers;
