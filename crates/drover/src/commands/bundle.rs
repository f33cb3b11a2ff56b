//! `drover bundle …` and `apply --bundle` / `--relay`: air-gapped deployment.
//!
//! ```text
//! drover bundle keygen [--key ops.key] [--pub ops.pub]
//! drover bundle build -o site.drv [--hosts SEL] [--roles SEL] [--base prev.drv] [--supervisor S]
//! drover bundle sign site.drv --key ops.key          # writes site.drv.minisig
//! drover bundle verify site.drv --pubkey ops.pub     # signature, index, every blob
//! drover bundle inspect site.drv [--json]
//! drover bundle agent site.drv -o drover-agent --pubkey ops.pub
//! drover apply --bundle site.drv [--pubkey ops.pub] [--relay]
//! ```
//!
//! The format and the signature scheme are in the `drover-bundle` crate and
//! `docs/bundle.md`; the relay scheduler in [`relay`].

mod inspect;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use drover_proto::Supervisor;

use crate::bundler::{self, BuildError, BuildInput};
use crate::exit::ExitStatus;
use crate::run::bundle::{extract_agents, open_verified, RelayOptions, SignedBundle, DEFAULT_PUBKEY};
use crate::select::select;

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create a minisign key pair for signing bundles (secret key unencrypted, mode 0600).
    Keygen {
        #[arg(long, default_value = "ops.key")]
        key: PathBuf,
        #[arg(long = "pub", default_value = "ops.pub")]
        public: PathBuf,
    },
    /// Compile the selected hosts and write one bundle: manifests, blobs, the agent, the project revision.
    Build(BuildArgs),
    /// Sign a bundle (ed25519, minisign): writes FILE.minisig; `minisign -Vm FILE -p KEY.pub` checks it.
    Sign {
        bundle: PathBuf,
        #[arg(long, value_name = "SECRET_KEY")]
        key: PathBuf,
    },
    /// Check a bundle's signature, its index and host signatures and every blob's hash.
    Verify(VerifyArgs),
    /// Show what a bundle holds (no signature check).
    Inspect {
        bundle: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Extract the agents from a verified bundle (to carry to a host for `drover-agent install`):
    /// PATH.<machine> for each machine it carries, and at PATH a launcher that runs the one for the
    /// host's `uname -m`.
    Agent {
        #[command(flatten)]
        verify: VerifyArgs,
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The bundle file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Only these hosts: host, group or role names, comma-separated.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Only hosts with these roles (or groups, or names), comma-separated.
    #[arg(long)]
    pub roles: Option<String>,
    /// Incremental: leave out the blobs this earlier bundle already carries.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// Supervisor to compile services for when a host's facts are not cached
    /// from an earlier run (runit, systemd, openrc).
    #[arg(long, default_value = "runit")]
    pub supervisor: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    /// Public key [default: /etc/drover/bundle.pub].
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
    /// Detached signature [default: BUNDLE.minisig].
    #[arg(long, value_name = "FILE")]
    pub sig: Option<PathBuf>,
}

/// `apply`/`plan` options for bundles and relay (flattened into `DeployArgs`).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Bundles and peer relay")]
pub struct ApplyArgs {
    /// Apply from this signed bundle instead of compiling the project:
    /// manifests, blobs and (without a project) the inventory come from it.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Key to check the bundle's signature with [default: /etc/drover/bundle.pub].
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub pubkey: Option<PathBuf>,
    /// The bundle's detached signature [default: FILE.minisig].
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub sig: Option<PathBuf>,
    /// Peer relay: hosts that hold a large blob serve it to the others, so it
    /// leaves the controller about once.
    #[arg(long)]
    pub relay: bool,
    /// TCP port of the hosts' relay servers.
    #[arg(long, value_name = "PORT", default_value_t = 7787)]
    pub relay_port: u16,
    /// Only blobs of at least this many MiB are relayed.
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    pub relay_min_mib: u64,
    /// Peer transfers one host serves at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub relay_fanout: usize,
}

impl ApplyArgs {
    /// Does this run need the bundle/relay pipeline?
    pub fn wanted(&self) -> bool {
        self.bundle.is_some() || self.relay
    }

    pub fn signed(&self) -> Option<SignedBundle> {
        let path = self.bundle.clone()?;
        Some(SignedBundle { path, pubkey: self.pubkey.clone(), sig: self.sig.clone() })
    }

    pub fn relay_options(&self) -> Option<RelayOptions> {
        self.relay.then_some(RelayOptions {
            port: self.relay_port,
            min_size: self.relay_min_mib << 20,
            fanout: self.relay_fanout,
        })
    }
}

pub fn run(dir: &Path, a: BundleArgs) -> anyhow::Result<ExitStatus> {
    match a.action {
        Action::Keygen { key, public } => {
            drover_bundle::sign::keygen(&key, &public).context("an existing key is never overwritten")?;
            println!("secret key {} (keep it offline), public key {}", key.display(), public.display());
            println!("hosts check bundles with the public key at {DEFAULT_PUBKEY}");
        }
        Action::Build(b) => build(dir, b)?,
        Action::Sign { bundle, key } => {
            let sig = drover_bundle::sign::sign(&bundle, &key)?;
            println!("signed {}: {}", bundle.display(), sig.display());
        }
        Action::Verify(v) => verify(&v)?,
        Action::Inspect { bundle, json } => inspect::inspect(&bundle, json)?,
        Action::Agent { verify: v, output } => {
            let b = open_verified(&v.bundle, v.pubkey.as_deref(), v.sig.as_deref())?;
            for (a, path) in extract_agents(&b, &output)? {
                println!("{}: drover-agent {} for {} ({})", path.display(), a.version, a.arch, a.hash.short());
            }
            println!("{}: runs the one for the host's machine (`uname -m`)", output.display());
        }
    }
    Ok(ExitStatus::Success)
}

fn verify(v: &VerifyArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let b = open_verified(&v.bundle, v.pubkey.as_deref(), v.sig.as_deref())?;
    for e in &b.index.blobs {
        b.extract(e, &mut std::io::sink())?;
    }
    println!(
        "{}: good signature; project {} revision {}; {} hosts, {} blobs ({}) all match their hashes ({:.1}s)",
        v.bundle.display(),
        b.index.project,
        b.index.revision,
        b.index.hosts.len(),
        b.index.blobs.len(),
        crate::human::bytes(b.index.blobs.iter().map(|e| e.size).sum()),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Why the bundle carries the agents it does: every one this drover has
/// when some host's machine is not known, else its hosts' machines.
fn agents_why(unknown: &[String]) -> String {
    match unknown.len() {
        0 => " (the machines of its hosts, by their cached facts)".into(),
        n => {
            let who = if n > 5 { format!("{n} hosts") } else { unknown.join(", ") };
            format!(": every agent this drover has, as the machine of {who} is not known (never applied from here)")
        }
    }
}

fn parse_supervisor(s: &str) -> anyhow::Result<Supervisor> {
    Ok(match s {
        "runit" => Supervisor::Runit,
        "systemd" => Supervisor::Systemd,
        "openrc" => Supervisor::OpenRc,
        other => anyhow::bail!("--supervisor {other}: expected runit, systemd or openrc"),
    })
}

fn build(dir: &Path, a: BuildArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let project = crate::store::load_project(dir)?;
    let sel: Vec<&str> = [a.hosts.as_deref(), a.roles.as_deref()].into_iter().flatten().collect();
    let sel = (!sel.is_empty()).then(|| sel.join(","));
    let hosts = select(&project.hosts, sel.as_deref())?;
    let sup = parse_supervisor(&a.supervisor)?;
    let store = crate::store::open(dir).ok();
    let base = a.base.as_deref().map(drover_bundle::Bundle::open).transpose().context("reading the base bundle")?;
    let input = BuildInput {
        project: &project,
        hosts: &hosts,
        store: store.as_ref(),
        base: base.as_ref(),
        supervisor: sup,
        revision: crate::store::project_rev(dir),
        output: &a.output,
    };
    // Spec errors keep their own rendering (file, line, fix).
    let built = bundler::build(&input).map_err(|e| match e {
        BuildError::Spec(s) => anyhow::Error::new(*s),
        other => anyhow::Error::new(other),
    })?;
    let index = built.index;
    let placeholders: Vec<&str> =
        index.hosts.iter().filter(|h| h.facts == "placeholder").map(|h| h.name.as_str()).collect();
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} hosts, {} blobs ({} in the base), {} written in {:.1}s; revision {}",
        a.output.display(),
        index.hosts.len(),
        index.blobs.len(),
        index.external.len(),
        crate::human::bytes(size),
        start.elapsed().as_secs_f64(),
        index.revision
    );
    if !placeholders.is_empty() {
        let who = match placeholders.len() {
            n if n > 5 => format!("{n} hosts"),
            _ => placeholders.join(", "),
        };
        println!("  no cached facts for {who} (never applied from here): compiled with supervisor {}", a.supervisor);
    }
    println!("  agents for {}{}", index.agent_machines(), agents_why(&built.unknown_machines));
    let sealed: Vec<&drover_bundle::HostEntry> = index.hosts.iter().filter(|h| !h.sealed.is_empty()).collect();
    if !sealed.is_empty() {
        println!(
            "  {} secret files of {} hosts sealed, each to its host's SSH host key (`bundle inspect` lists them)",
            sealed.iter().map(|h| h.sealed.len()).sum::<usize>(),
            sealed.len()
        );
    }
    println!("next: drover bundle sign {} --key ops.key", a.output.display());
    Ok(())
}
