//! drover: fleet deployment over SSH.
//!
//! The binary parses arguments ([`cli`]), then hands off to one module per
//! verb under [`commands`]. Exit codes are decided in one place,
//! [`exit::ExitStatus`], so scripts can trust them.

pub mod agent_bin;
pub mod bootstrap;
pub mod bundler;
pub mod cli;
pub mod commands;
pub mod deploy;
pub mod exit;
pub mod fact_cache;
pub mod fleet;
pub mod instances;
pub mod link;
pub mod packages;
pub mod phases;
pub mod pins;
pub mod plan;
pub mod progress;
pub mod reboot;
pub mod report;
pub mod revision;
pub mod rollout;
pub mod runlog;
pub mod select;
pub mod serve;
pub mod ship;
pub mod sim;
pub mod status;
pub mod tasks;
pub mod transport;
pub mod workers;

use std::process::ExitCode;

use clap::Parser;

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    match commands::run(cli) {
        Ok(status) => status.into(),
        Err(err) => exit::report(err),
    }
}

/// Logs go to stderr only; `-v` sets the default level and `RUST_LOG`
/// overrides it, so stdout stays clean for `--json`.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
