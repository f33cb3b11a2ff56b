//! `drover packages lock`: resolve the roles' packages and write
//! `packages.lock` (docs/project.md#packages). Parsing and printing only;
//! the work is in `crate::packages`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct PackagesArgs {
    #[command(subcommand)]
    pub command: PackagesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PackagesCommand {
    /// Resolve every role's packages (with their dependencies), fetch the
    /// .deb files into .drover/packages/ and write packages.lock.
    Lock {
        /// Lock for this target (`debian-12-arm64`; repeatable); the lock's
        /// other targets stay as they are. Default: every target of
        /// packages.lock and of the hosts drover has facts for, else the
        /// controller's own.
        #[arg(long)]
        target: Vec<String>,
    },
}

pub fn run(dir: &Path, args: PackagesArgs) -> anyhow::Result<ExitStatus> {
    match args.command {
        PackagesCommand::Lock { target } => {
            let mut project = crate::store::load_project_unlocked(dir)?;
            let targets: BTreeSet<String> =
                if target.is_empty() { crate::packages::known_targets(&project) } else { target.into_iter().collect() };
            let lock = crate::packages::lock(&mut project, &targets)?;
            for t in &lock.targets {
                let bytes: u64 = t.packages.iter().map(|p| p.size).sum();
                println!("{}: {} packages, {} bytes", t.target, t.packages.len(), bytes);
                for p in &t.packages {
                    println!("  {} {} {}", p.name, p.version, p.arch);
                }
                // Shipped only to hosts whose own version fails a need.
                for p in &t.base {
                    println!(
                        "  {} {} {} (base; for hosts behind: {})",
                        p.name,
                        p.version,
                        p.arch,
                        p.needed_by.join(", ")
                    );
                }
            }
            println!("wrote packages.lock");
            Ok(ExitStatus::Success)
        }
    }
}
