//! `drover serve`: parse the options, hand off to [`crate::serve`].

use std::path::{Path, PathBuf};

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs --token-file.
    #[arg(long, default_value = "127.0.0.1:7780")]
    pub listen: std::net::SocketAddr,
    /// Check every host this often and record each pass as a run; with
    /// `[serve] reconcile = "heal"` in drover.toml, re-apply drifted hosts,
    /// hosts without a current generation and hosts behind the project
    /// (not those a `drover rollback` holds).
    #[arg(long, value_name = "DURATION")]
    pub reconcile: Option<String>,
    /// Without --reconcile: refresh the dashboard this often (unrecorded).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub check_every: String,
    /// Access tokens, one `name role token` per line (role viewer or operator).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Simulated transport (see `drover apply --simulate`).
    #[arg(long, value_name = "DIR")]
    pub simulate: Option<PathBuf>,
}

pub fn run(dir: &Path, a: ServeArgs) -> anyhow::Result<ExitStatus> {
    let dur = |s: &str, what: &str| {
        drover_spec::parse_duration(s).map_err(|e| anyhow::anyhow!("--{what} {s}: {e}; write e.g. 30s or 10m"))
    };
    let reconcile = a.reconcile.as_deref().map(|s| dur(s, "reconcile")).transpose()?;
    if reconcile.is_some_and(|d| d.is_zero()) {
        anyhow::bail!("--reconcile must be longer than 0s");
    }
    // Fail on a broken project now, not on the first pass.
    drover_spec::Project::load(dir)?;
    crate::serve::run(crate::serve::Config {
        dir: std::path::absolute(dir)?,
        listen: a.listen,
        reconcile,
        check_every: dur(&a.check_every, "check-every")?.max(std::time::Duration::from_secs(1)),
        tokens: a.token_file.as_deref().map(crate::serve::Tokens::load).transpose()?,
        simulate: a.simulate,
    })?;
    Ok(ExitStatus::Success)
}
