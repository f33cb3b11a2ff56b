//! `drover endpoints` and `drover scale`: argument parsing and printing;
//! the logic is `crate::instances` and `drover_spec` (placement).

use std::path::Path;

use crate::exit::ExitStatus;
use crate::instances;

#[derive(Debug, clap::Args)]
pub struct EndpointsArgs {
    /// Only this service's instances.
    pub service: Option<String>,
    /// JSON: `{"<service>": [{name, index, service, host, address, ports}]}`,
    /// the same data templates see as `fleet.services`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// The service (services/SERVICE.toml).
    pub service: String,
    /// The new number of instances (`placement.count`, or `instances`).
    pub count: u32,
}

pub fn endpoints(dir: &Path, a: EndpointsArgs) -> anyhow::Result<ExitStatus> {
    let project = crate::store::load_project(dir)?;
    let e = instances::select(project.endpoints()?, a.service.as_deref()).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", instances::table(&e));
    }
    Ok(ExitStatus::Success)
}

pub fn scale(dir: &Path, a: ScaleArgs) -> anyhow::Result<ExitStatus> {
    // The placement now: empty if it cannot be placed as it stands (scaling
    // may be what fixes that).
    let before = crate::store::load_project(dir).ok().and_then(|p| p.endpoints().ok().cloned()).unwrap_or_default();
    let edit = instances::edit_count(dir, &a.service, a.count)?;
    let after = match crate::store::load_project(dir).and_then(|p| Ok(p.endpoints()?.clone())) {
        Ok(e) => e,
        Err(e) => {
            std::fs::write(&edit.path, &edit.original)?;
            eprintln!("{} left unchanged: {} = {} cannot be placed", edit.path.display(), edit.key, a.count);
            return Err(e);
        }
    };
    println!("{}: {} {} -> {}", edit.path.display(), edit.key, edit.old, a.count);
    let changes = instances::diff(&before, &after);
    match instances::render(&changes).as_str() {
        "" => println!("no instance changes"),
        text => print!("{}", text.trim_start()),
    }
    println!("next: `drover plan` for every host's file changes, `drover apply` to make it so");
    Ok(ExitStatus::Success)
}
