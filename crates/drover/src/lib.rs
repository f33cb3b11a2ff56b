//! drover: fleet deployment over SSH.
//!
//! The binary parses arguments ([`cli`]), then hands off to one module per
//! verb under [`commands`] (or to [`serve`]), which build a run and print its
//! report. The engine is three layers, each importing only those below it
//! and the base modules: [`run`] (a run's settings, the one scheduler,
//! batches, workers, the run's record), [`host`] (one host's session as a
//! state machine, and the delivery strategies it ships with), [`transport`]
//! (SSH, bootstrap, the agent link, simulated hosts). Exit codes are decided
//! in one place, [`exit`], so scripts can trust them. `docs/architecture.md`
//! draws the layers and follows one apply through them.

// Front ends: parse, call, print.
pub mod cli;
pub mod commands;
pub mod exit;
pub mod serve;

// The engine, top to bottom: runs over many hosts, one host's session, how
// bytes reach a host's agent. No module imports from a layer above its own.
pub mod host;
pub mod run;
pub mod transport;

// Base: imported by any layer, importing none of them.
pub mod agent_bin;
pub mod bundler;
pub mod fact_cache;
pub mod human;
pub mod instances;
pub mod packages;
pub mod phases;
pub mod pins;
pub mod progress;
pub mod revision;
pub mod select;
pub mod store;
pub mod tasks;

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
