//! One module per verb.

pub mod bundle;
pub mod day2;
pub mod deploy;
pub mod init;
pub mod instances;
pub mod inventory;
pub mod lab;
pub mod logs;
pub mod packages;
pub mod reboot;
pub mod rollout;
pub mod secret;
pub mod serve;
pub mod state;
pub mod trust;
pub mod worker;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;
use crate::host::Mode;

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let dir = cli.project.as_path();
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Plan(args) => deploy::plan(dir, args),
        Command::Apply(args) => deploy::run(dir, args, Mode::Apply),
        Command::Rollback { to, args } => deploy::run(dir, args, Mode::Rollback { to }),
        Command::Trust(args) => trust::run(dir, args),
        Command::Inventory(args) => inventory::run(dir, args),
        Command::Lab(args) => lab::run(args),
        Command::Status(t) => day2::status(dir, t),
        Command::Rollout(a) => rollout::run(dir, a),
        Command::History(a) => day2::history(dir, a),
        Command::Logs(a) => logs::run(dir, a),
        Command::Exec(a) => day2::exec(dir, a),
        Command::Reboot(a) => reboot::run(dir, a),
        Command::Drain(a) => day2::drain(dir, a, true),
        Command::Undrain(a) => day2::drain(dir, a, false),
        Command::Bundle(a) => bundle::run(dir, a),
        Command::Secret(a) => secret::run(dir, a),
        Command::Endpoints(a) => instances::endpoints(dir, a),
        Command::Scale(a) => instances::scale(dir, a),
        Command::Packages(a) => packages::run(dir, a),
        Command::Serve(a) => serve::run(dir, a),
        Command::State(a) => state::run(dir, a),
        Command::Worker(a) => worker::run(dir, a),
    }
}
