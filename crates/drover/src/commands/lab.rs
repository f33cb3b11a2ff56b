//! `drover lab`: placeholder until the lab fleet lands.
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

pub fn run(_args: LabArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("not yet")
}
