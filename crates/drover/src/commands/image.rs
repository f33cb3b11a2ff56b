//! `drover image pull` and `drover image update` (docs/containers.md#images):
//! parsing and printing only; the work is in `drover_oci`.

use std::path::{Path, PathBuf};

use drover_oci::{Pin, RegistryOptions, Source};

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image into .drover/images/ (a registry reference through
    /// images.lock: its pin, or resolved and pinned now), flatten it and
    /// show its digest, config, files and what it shares with cached images.
    Pull {
        /// `registry.example/app:1.4`, `app@sha256:…`.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        reference: Option<String>,
        /// A `docker save` tarball or an OCI image layout (directory or
        /// tar), relative to the project directory.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The architecture to pull for (x86_64/amd64, aarch64/arm64).
        /// Default: the controller's.
        #[arg(long)]
        arch: Option<String>,
        /// A registry (`host:port`) to reach over plain HTTP although it is
        /// not on loopback (repeatable).
        #[arg(long, value_name = "REGISTRY")]
        insecure: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resolve references again (default: every one in images.lock) and
    /// rewrite their pins in images.lock.
    Update {
        /// References as written in images.lock; default: all of them.
        references: Vec<String>,
        /// As for `pull`.
        #[arg(long, value_name = "REGISTRY")]
        insecure: Vec<String>,
    },
}

/// drover.toml `[registries]` (credentials from secrets, insecure ones)
/// and `~/.docker/config.json`, plus `--insecure`.
fn options(dir: &Path, insecure: Vec<String>) -> anyhow::Result<RegistryOptions> {
    let mut o = crate::images::options(dir)?;
    o.insecure.extend(insecure);
    Ok(o)
}

pub fn run(dir: &Path, args: ImageArgs) -> anyhow::Result<ExitStatus> {
    match args.command {
        ImageCommand::Pull { reference, file, arch, insecure, json } => {
            let source = match (reference, file) {
                (_, Some(f)) => Source::File(f),
                (Some(r), None) => Source::Registry(r),
                (None, None) => unreachable!("clap requires one"),
            };
            let arch = arch.unwrap_or_else(|| drover_oci::host_arch().to_string());
            let p = drover_oci::project::pull(dir, &source, &arch, &options(dir, insecure)?)?;
            let c = &p.image.config;
            let pin = match p.pin {
                Pin::File => "file",
                Pin::Kept => "pinned",
                Pin::New => "newly pinned",
            };
            if json {
                let v = serde_json::json!({
                    "source": p.image.source, "arch": p.image.arch, "pin": pin,
                    "manifest_digest": p.image.manifest_digest, "config_digest": p.image.config_digest,
                    "layers": p.image.layers.len(),
                    "config": {
                        "entrypoint": c.entrypoint, "cmd": c.cmd, "env": c.env, "user": c.user,
                        "working_dir": c.working_dir, "exposed_ports": c.exposed_ports, "labels": c.labels,
                        "healthcheck": c.healthcheck.as_ref().map(|h| h.test.clone()),
                    },
                    "files": p.tree.file_count(), "bytes": p.tree.total_bytes(), "entries": p.tree.entries.len(),
                    "shared_files": p.shared_files,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitStatus::Success);
            }
            println!("{} ({}, linux/{})", p.image.source, pin, p.image.arch);
            println!("  manifest   {}", p.image.manifest_digest);
            println!("  config     {}", p.image.config_digest);
            println!("  layers     {}", p.image.layers.len());
            let words = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(" ") };
            println!("  entrypoint {}", words(&c.entrypoint));
            println!("  cmd        {}", words(&c.cmd));
            println!("  user       {}", if c.user.is_empty() { "-" } else { &c.user });
            println!("  workdir    {}", if c.working_dir.is_empty() { "-" } else { &c.working_dir });
            println!("  ports      {}", words(&c.exposed_ports));
            println!("  env        {}", words(&c.env));
            if let Some(h) = &c.healthcheck {
                println!("  health     {}", h.test.join(" "));
            }
            println!(
                "  files      {} ({} bytes), {} shared with other cached images",
                p.tree.file_count(),
                p.tree.total_bytes(),
                p.shared_files
            );
            Ok(ExitStatus::Success)
        }
        ImageCommand::Update { references, insecure } => {
            for u in drover_oci::project::update(dir, &references, &options(dir, insecure)?)? {
                match &u.old {
                    Some(old) if *old == u.new => println!("{} ({}): {} (unchanged)", u.reference, u.arch, u.new),
                    Some(old) => println!("{} ({}): {} -> {}", u.reference, u.arch, old, u.new),
                    None => println!("{} ({}): {} (new)", u.reference, u.arch, u.new),
                }
            }
            println!("wrote images.lock");
            Ok(ExitStatus::Success)
        }
    }
}
