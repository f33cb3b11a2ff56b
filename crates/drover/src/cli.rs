//! Command-line arguments. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "drover", version, about = "Fleet deployment over SSH: compile, ship, apply atomically, roll back.")]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Project directory (default: the current directory).
    #[arg(short = 'C', long = "project", global = true, default_value = ".")]
    pub project: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local lab fleet: real SSH hosts in network namespaces.
    Lab(crate::commands::lab::LabArgs),
}
