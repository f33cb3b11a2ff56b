//! Command-line arguments. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::day2::{DrainArgs, ExecArgs, HistoryArgs};
use crate::commands::{deploy::DeployArgs, init::InitArgs, lab::LabArgs, logs::LogsArgs, trust::TrustArgs};

#[derive(Debug, Parser)]
#[command(name = "drover", version, about = "Fleet deployment over SSH: compile, ship, apply atomically, roll back.")]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Project directory.
    #[arg(short = 'C', long = "project", global = true, default_value = ".")]
    pub project: PathBuf,

    /// An ssh_config file read instead of ~/.ssh/config (and of drover.toml's
    /// `[ssh] config`): HostName, User, Port, IdentityFile, ProxyJump… for
    /// the inventory's hosts (docs/ssh.md).
    #[arg(short = 'F', long = "ssh-config", global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project from the quickstart example.
    Init(InitArgs),
    /// Show, per host, the files that would change and the services that would restart.
    Plan(crate::commands::deploy::PlanArgs),
    /// Print one host's rendering of one file, as apply would ship it
    /// (secret values redacted unless --show-secrets).
    Render(crate::commands::render::RenderArgs),
    /// Ship and activate the desired state on every selected host.
    Apply(DeployArgs),
    /// Re-activate a kept generation (the previous one by default).
    Rollback {
        /// Generation number to return to.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        args: DeployArgs,
    },
    /// Rolling upgrade: batch by batch behind health gates; pause, resume, abort.
    Rollout(crate::commands::rollout::RolloutArgs),
    /// Per host: generation, drift, services and health, drained, last run.
    Status(crate::commands::status::StatusArgs),
    /// Past runs per host, from the state store.
    History(HistoryArgs),
    /// A service's log lines from its hosts, prefixed by host and time.
    Logs(LogsArgs),
    /// Run a command on hosts; output grouped per host, exit codes summarised.
    Exec(ExecArgs),
    /// Reboot hosts one batch at a time, each batch back and healthy before
    /// the next (e.g. after a kernel update from packages).
    Reboot(crate::commands::reboot::RebootCmd),
    /// Stop a host's services and mark it so applies and rollouts skip it.
    Drain(DrainArgs),
    /// Start a drained host's services again and clear the mark.
    Undrain(DrainArgs),
    /// Inventories: import one people already have (Ansible INI or YAML).
    Inventory(crate::commands::inventory::InventoryArgs),
    /// Apps from other tools: `import compose docker-compose.yml` writes
    /// services and a role (docs/containers.md).
    Import(crate::commands::import::ImportArgs),
    /// Record hosts' SSH host keys in the project's known_hosts.
    Trust(TrustArgs),
    /// Run a local lab fleet: real SSH hosts in network namespaces.
    Lab(LabArgs),
    /// Air-gapped deployment: build, sign, verify and inspect bundles.
    Bundle(crate::commands::bundle::BundleArgs),
    /// Age-encrypted secrets: init, set, edit, add-file, rekey, list.
    Secret(crate::commands::secret::SecretArgs),
    /// Every service's instances: host, address and ports (discovery).
    Endpoints(crate::commands::instances::EndpointsArgs),
    /// Set a service's number of instances in its file and show which
    /// instances that adds, removes or moves (apply to make it so).
    Scale(crate::commands::instances::ScaleArgs),
    /// Named volumes of services run from images: list them, remove one.
    Volume(crate::commands::volume::VolumeArgs),
    /// Debian packages: resolve the roles' packages and write packages.lock.
    Packages(crate::commands::packages::PackagesArgs),
    /// Container images: pull, flatten and pin in images.lock (docs/containers.md).
    Image(crate::commands::image::ImageArgs),
    /// Dashboard, JSON API, Prometheus /metrics; optionally continuous convergence.
    Serve(crate::commands::serve::ServeArgs),
    /// The state store: copy a SQLite history to PostgreSQL (`migrate`).
    State(crate::commands::state::StateArgs),
    /// Claim and run host jobs of runs split across controllers
    /// (`apply --workers`), from the shared PostgreSQL state store.
    Worker(crate::commands::worker::WorkerArgs),
    /// The per-user process holding a project's SSH sessions between
    /// commands (`[ssh] persist`); started by the commands themselves.
    #[command(hide = true)]
    Resident(crate::commands::resident::ResidentArgs),
}
