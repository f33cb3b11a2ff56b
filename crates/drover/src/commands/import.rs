//! `drover import compose FILE [-o DIR]`: argument parsing and printing
//! only; the conversion is `drover_import::compose`.

use std::path::{Path, PathBuf};

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub from: ImportFrom,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportFrom {
    /// A docker-compose file: services/NAME.toml per compose service (image,
    /// command, env, volumes, healthcheck, depends_on, replicas, limits)
    /// and a role listing them. What has no drover equivalent is listed on
    /// stderr with file:line.
    Compose(ComposeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ComposeArgs {
    /// The compose file (`${VAR}`s come from the environment, then `.env` beside it).
    pub file: PathBuf,
    /// The project directory to write into (default: the project's).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Replace service and role files that exist.
    #[arg(long)]
    pub force: bool,
}

pub fn run(project_dir: &Path, args: ImportArgs) -> anyhow::Result<ExitStatus> {
    let ImportFrom::Compose(a) = args.from;
    let imported = drover_import::compose::import_file(&a.file)?;
    for f in &imported.findings {
        eprintln!("{f}");
    }
    let dir = a.output.unwrap_or_else(|| project_dir.to_path_buf());
    let written = imported.write(&dir, a.force)?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    println!(
        "imported {} services into role {}; {} not imported, {} imported with a caveat",
        imported.services.len(),
        imported.role,
        imported.unmapped().count(),
        imported.caveats().count(),
    );
    println!("next: give hosts the role (roles = [\"{}\"] in inventory.toml), then `drover plan`", imported.role);
    Ok(ExitStatus::Success)
}
