//! `drover volume ls` and `drover volume rm`: image services' named
//! volumes on their hosts (docs/containers.md). A volume lives outside
//! every generation: no apply, rollback or service removal deletes it;
//! only `drover volume rm`, refused while the service's container runs.

use std::path::PathBuf;

use crate::exit::ExitStatus;
use crate::run::container::{parse_ls, volume_ls_command, volume_rm_command, RM_ABSENT, RM_RUNNING};
use crate::run::fleet::{runtime, Fleet};
use crate::select::select;

#[derive(Debug, clap::Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Every named volume on the hosts: service, volume, owner, size.
    Ls {
        /// Host, group or role names (comma-separated); default all.
        #[arg(long)]
        hosts: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "DIR")]
        simulate: Option<PathBuf>,
    },
    /// Delete a service's named volume and its data, on one host or on
    /// every host with it; refused where the service's container runs.
    Rm {
        service: String,
        volume: String,
        /// Only on this host (host, group or role names, comma-separated).
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_name = "DIR")]
        simulate: Option<PathBuf>,
    },
}

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub fn volume(dir: &std::path::Path, a: VolumeArgs) -> anyhow::Result<ExitStatus> {
    match a.command {
        VolumeCommand::Ls { hosts, json, simulate } => ls(dir, hosts.as_deref(), json, simulate),
        VolumeCommand::Rm { service, volume, host, simulate } => rm(dir, &service, &volume, host.as_deref(), simulate),
    }
}

fn ls(dir: &std::path::Path, sel: Option<&str>, json: bool, simulate: Option<PathBuf>) -> anyhow::Result<ExitStatus> {
    let project = crate::store::load_project_unlocked(dir)?;
    let hosts = select(&project.hosts, sel)?;
    let fleet = Fleet::new(&project, simulate.as_deref())?;
    let results = runtime()?.block_on(fleet.exec(&hosts, &volume_ls_command(), TIMEOUT));
    let mut rows = Vec::new();
    let mut failed = 0;
    for (h, r) in &results {
        match r {
            Ok(x) if x.code == Some(0) => rows.extend(parse_ls(h, &String::from_utf8_lossy(&x.stdout))),
            Ok(x) => {
                failed += 1;
                eprintln!("{h}: listing failed: {}", String::from_utf8_lossy(&x.stderr).trim());
            }
            Err(e) => {
                failed += 1;
                eprintln!("{h}: {e}");
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:<20} {:<20} {:<20} {:<12} {:>10}", "HOST", "SERVICE", "VOLUME", "OWNER", "KIB");
        for r in &rows {
            println!("{:<20} {:<20} {:<20} {:<12} {:>10}", r.host, r.service, r.volume, r.owner, r.kib);
        }
    }
    Ok(if failed > 0 { ExitStatus::HostsFailed } else { ExitStatus::Success })
}

fn rm(
    dir: &std::path::Path,
    service: &str,
    volume: &str,
    sel: Option<&str>,
    simulate: Option<PathBuf>,
) -> anyhow::Result<ExitStatus> {
    let project = crate::store::load_project_unlocked(dir)?;
    let hosts = select(&project.hosts, sel)?;
    let command = volume_rm_command(service, volume)?;
    let fleet = Fleet::new(&project, simulate.as_deref())?;
    super::day2::audit(
        dir,
        "volume rm",
        &format!("{service} {volume}{}", sel.map(|h| format!(" --host {h}")).unwrap_or_default()),
    )?;
    let results = runtime()?.block_on(fleet.exec(&hosts, &command, TIMEOUT));
    let (mut removed, mut failed) = (0, 0);
    for (h, r) in &results {
        match r {
            Ok(x) if x.code == Some(0) => {
                removed += 1;
                println!("{h}: removed volume {service}/{volume}");
            }
            // Absent on a host of a fleet-wide removal is not a failure.
            Ok(x) if x.code == Some(RM_ABSENT) => {}
            Ok(x) => {
                failed += 1;
                let why = String::from_utf8_lossy(&x.stderr).trim().to_string();
                let what = if x.code == Some(RM_RUNNING) { "refused" } else { "failed" };
                eprintln!("{h}: {what}: {why}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("{h}: {e}");
            }
        }
    }
    if removed == 0 && failed == 0 {
        eprintln!("no volume {service}/{volume} on the selected hosts");
        return Ok(ExitStatus::HostsFailed);
    }
    Ok(if failed > 0 { ExitStatus::HostsFailed } else { ExitStatus::Success })
}
