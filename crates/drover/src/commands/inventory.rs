//! `drover inventory import ansible FILE`: argument parsing and printing
//! only; the conversion is `drover_import::ansible`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    #[command(subcommand)]
    pub command: InventoryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Convert an inventory from another tool into inventory.toml.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportFrom {
    /// An Ansible inventory, INI or YAML: hosts, groups, children, ranges,
    /// ansible_host/port/user and group and host vars. What has no drover
    /// equivalent is listed on stderr.
    Ansible(AnsibleArgs),
}

#[derive(Debug, clap::Args)]
pub struct AnsibleArgs {
    /// The Ansible inventory file (YAML when it ends in .yml/.yaml).
    pub file: PathBuf,
    /// Write here instead of the project's inventory.toml.
    #[arg(short, long, value_name = "FILE", conflicts_with = "stdout")]
    pub output: Option<PathBuf>,
    /// Print the inventory instead of writing a file.
    #[arg(long)]
    pub stdout: bool,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(project_dir: &Path, args: InventoryArgs) -> anyhow::Result<ExitStatus> {
    let InventoryCommand::Import { from: ImportFrom::Ansible(a) } = args.command;
    let imported = drover_import::ansible::import_file(&a.file)?;
    let text = imported.to_toml();
    for f in &imported.findings {
        eprintln!("{f}");
    }
    let target = if a.stdout {
        std::io::stdout().write_all(text.as_bytes())?;
        "stdout".to_string()
    } else {
        let path = a.output.unwrap_or_else(|| project_dir.join("inventory.toml"));
        drover_import::write_inventory(&path, &text, a.force)?;
        path.display().to_string()
    };
    let summary = format!(
        "imported {} hosts, {} groups into {target}; {} not imported, {} imported with a caveat",
        imported.hosts.len(),
        imported.groups.len(),
        imported.unmapped().count(),
        imported.caveats().count(),
    );
    let next = "next: give the hosts roles (`roles = [...]` per host, or [defaults] roles in drover.toml), then `drover trust`";
    if a.stdout {
        eprintln!("{summary}\n{next}");
    } else {
        println!("{summary}\n{next}");
    }
    Ok(ExitStatus::Success)
}
