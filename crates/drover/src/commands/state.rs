//! `drover state migrate --to postgres://…`: the project's SQLite history
//! into a PostgreSQL database (logic: `drover_state::copy`).

use std::path::{Path, PathBuf};

use drover_state::{Location, Store};

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Copy every run, host result, audit entry, fact, drain mark and
    /// rollout from the project's SQLite store into an empty PostgreSQL
    /// database, then check the copy row for row. Then set `[state] url`.
    Migrate {
        /// The target database, e.g. postgres://drover@db.example/fleet.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The SQLite store to copy (default: the project's .drover/state.db).
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
    },
}

pub fn run(dir: &Path, a: StateArgs) -> anyhow::Result<ExitStatus> {
    match a.command {
        StateCommand::Migrate { to, from } => migrate(dir, &to, from),
    }
}

fn migrate(dir: &Path, to: &str, from: Option<PathBuf>) -> anyhow::Result<ExitStatus> {
    let src = from.unwrap_or_else(|| dir.join(".drover/state.db"));
    anyhow::ensure!(src.exists(), "{}: no SQLite state store to copy (pass --from PATH)", src.display());
    let target = Location::parse(dir, to)?;
    anyhow::ensure!(
        target.is_postgres(),
        "--to {}: give the PostgreSQL database to copy into (postgres://user@host/db)",
        target.describe()
    );
    let from = Store::open(&src)?;
    let mut into = Store::open_location(&target)?;
    let n = drover_state::copy(&from, &mut into)?;
    println!(
        "copied {} runs, {} host results, {} audit entries, {} hosts' facts, {} drain marks, {} rollouts from {} to {} (checked)",
        n.runs,
        n.results,
        n.audit,
        n.facts,
        n.drained,
        n.rollouts,
        src.display(),
        target.describe()
    );
    println!("now set [state] url in drover.toml (or DROVER_STATE_URL) to use it");
    Ok(ExitStatus::Success)
}
