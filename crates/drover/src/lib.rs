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
pub mod bases;
pub mod bundler;
pub mod fact_cache;
pub mod human;
pub mod images;
pub mod instances;
pub mod packages;
pub mod phases;
pub mod pins;
pub mod progress;
pub mod render;
pub mod revision;
pub mod select;
pub mod store;
pub mod tasks;

use std::process::ExitCode;

use clap::Parser;

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Read where the project is loaded (drover-spec), which every command
    // does its own way: the environment reaches them all. Set before any
    // thread starts.
    if let Some(f) = &cli.ssh_config {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        std::env::set_var("DROVER_SSH_CONFIG", abs);
    }
    init_tracing(cli.verbose);
    match dispatch(cli) {
        Ok(status) => status.into(),
        Err(err) => exit::report(err),
    }
}

/// Logs go to stderr only; `-v` sets the default level and `RUST_LOG`
/// overrides it, so stdout stays clean for `--json`. Coloured only on a
/// terminal: `drover serve 2>>serve.log` (or under systemd, into the
/// journal) must write plain text, not escape codes.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();
}

/// Hand a parsed command line to its verb's module.
fn dispatch(cli: cli::Cli) -> anyhow::Result<exit::ExitStatus> {
    use cli::Command;
    use host::Mode;
    let dir = cli.project.as_path();
    match cli.command {
        Command::Init(args) => commands::init::run(args),
        Command::Plan(args) => commands::deploy::plan(dir, args),
        Command::Apply(args) => commands::deploy::run(dir, args, Mode::Apply),
        Command::Rollback { to, args } => commands::deploy::run(dir, args, Mode::Rollback { to }),
        Command::Trust(args) => commands::trust::run(dir, args),
        Command::Inventory(args) => commands::inventory::run(dir, args),
        Command::Import(args) => commands::import::run(dir, args),
        Command::Lab(args) => commands::lab::run(args),
        Command::Status(a) => commands::status::run(dir, a),
        Command::Rollout(a) => commands::rollout::run(dir, a),
        Command::History(a) => commands::day2::history(dir, a),
        Command::Logs(a) => commands::logs::run(dir, a),
        Command::Exec(a) => commands::day2::exec(dir, a),
        Command::Reboot(a) => commands::reboot::run(dir, a),
        Command::Render(a) => commands::render::run(dir, a),
        Command::Drain(a) => commands::day2::drain(dir, a, true),
        Command::Undrain(a) => commands::day2::drain(dir, a, false),
        Command::Bundle(a) => commands::bundle::run(dir, a),
        Command::Secret(a) => commands::secret::run(dir, a),
        Command::Endpoints(a) => commands::instances::endpoints(dir, a),
        Command::Volume(a) => commands::volume::volume(dir, a),
        Command::Scale(a) => commands::instances::scale(dir, a),
        Command::Packages(a) => commands::packages::run(dir, a),
        Command::Image(a) => commands::image::run(dir, a),
        Command::Serve(a) => commands::serve::run(dir, a),
        Command::State(a) => commands::state::run(dir, a),
        Command::Worker(a) => commands::worker::run(dir, a),
        Command::Resident(a) => commands::resident::run(dir, a),
    }
}
