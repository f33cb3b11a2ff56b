//! `drover render HOST PATH`: print one host's rendering of one file (see
//! `crate::render`).

use std::io::Write as _;
use std::path::Path;

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The host (its inventory name).
    pub host: String,
    /// The file's path on the host, e.g. /etc/app/config.json.
    pub path: String,
    /// Print secret values instead of `<secret NAME>`.
    #[arg(long)]
    pub show_secrets: bool,
    /// The generation number templates see as `generation`.
    #[arg(long, default_value_t = 1)]
    pub generation: u64,
}

pub fn run(dir: &Path, a: RenderArgs) -> anyhow::Result<ExitStatus> {
    let project = crate::store::load_project(dir)?;
    let r = crate::render::file(&project, &a.host, &a.path, a.generation, a.show_secrets).map_err(|e| match e {
        crate::render::RenderError::Spec(s) => anyhow::Error::new(*s),
        other => anyhow::Error::new(other),
    })?;
    if r.placeholder_facts {
        eprintln!("note: {} has reported no facts yet (apply once): templates saw placeholder facts", a.host);
    }
    if !r.redacted.is_empty() {
        eprintln!("note: secret values shown as <secret NAME> ({}); --show-secrets prints them", r.redacted.join(", "));
    }
    std::io::stdout().write_all(&r.content)?;
    Ok(ExitStatus::Success)
}
