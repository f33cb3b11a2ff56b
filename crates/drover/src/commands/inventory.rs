//! `drover inventory import ansible FILE`: argument parsing and printing
//! only; the conversion is `drover_import::ansible`. `drover inventory show
//! HOST`: how a host is reached and where each value came from (the merge is
//! drover-spec's `connect`).

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
    /// How one host is reached (address, port, user, keys, ssh_config
    /// settings, pinned keys and CAs) and where each value came from:
    /// inventory file:line, ssh_config file:line, or default.
    Show {
        /// The host's inventory name.
        host: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
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
    let a = match args.command {
        InventoryCommand::Show { host, json } => return show(project_dir, &host, json),
        InventoryCommand::Import { from: ImportFrom::Ansible(a) } => a,
    };
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

fn show(project_dir: &Path, name: &str, json: bool) -> anyhow::Result<ExitStatus> {
    let project = drover_spec::Project::load(project_dir)?;
    let Some(h) = project.hosts.iter().find(|h| h.name == name) else {
        let known: Vec<&str> = project.hosts.iter().take(10).map(|h| h.name.as_str()).collect();
        anyhow::bail!(
            "no host {name:?} in the inventory (hosts: {}{})",
            known.join(", "),
            if project.hosts.len() > 10 { ", …" } else { "" }
        );
    };
    let mut rows: Vec<(String, String, String)> =
        h.ssh.provenance.iter().map(|p| (p.field.to_string(), p.value.clone(), p.source.clone())).collect();
    if h.auth.key.is_none() && h.ssh.identity_files.is_empty() {
        rows.push((
            "identity-file".into(),
            "~/.ssh/id_ed25519, id_ecdsa, id_rsa (those that exist)".into(),
            "default".into(),
        ));
    }
    let agent = if h.ssh.identities_only { "not offered (IdentitiesOnly)" } else { "offered after the keys" };
    rows.push(("ssh-agent".into(), agent.into(), "default".into()));
    if h.auth.password.is_some() {
        rows.push(("password".into(), "*** (tried last)".into(), h.origin.clone()));
    }
    if h.host_keys.is_empty() && h.ssh.cert_authorities.is_empty() {
        rows.push(("host-key".into(), "none pinned: run `drover trust`".into(), "-".into()));
    }
    if json {
        let values: Vec<_> =
            rows.iter().map(|(f, v, s)| serde_json::json!({ "field": f, "value": v, "source": s })).collect();
        let out = serde_json::json!({ "host": h.name, "declared": h.origin, "values": values });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitStatus::Success);
    }
    println!("{} (declared at {})", h.name, h.origin);
    for (f, v, s) in &rows {
        let v = if v.len() > 60 { format!("{}…", &v[..v.floor_char_boundary(59)]) } else { v.clone() };
        println!("  {f:<22} {v:<62} {s}");
    }
    Ok(ExitStatus::Success)
}
