//! One module per verb.

pub mod lab;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Lab(args) => lab::run(args),
    }
}
