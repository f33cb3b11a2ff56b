//! `drover lab`: a local fleet of real SSH hosts, for trying drover and for
//! its tests and benchmarks (what `kind` is to Kubernetes).
//!
//! This file is the command line only: parsing, progress and printing. The
//! lab itself is the `drover-lab` crate. Machine refusals (not root, not
//! Linux, missing tools) exit with code 3, hosts that did not come up with 2.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::Subcommand;
use drover_lab::{Arch, DownReport, Fault, Init, Kind, Lab, LabConfig, LabError, Progress, Userland, WireHelper};
use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::ExitStatus;
use crate::run::Refusal;

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Lab to act on. Labs are independent, so several can run side by side.
    #[arg(long, global = true, env = "DROVER_LAB", default_value = drover_lab::DEFAULT_LAB, value_name = "NAME")]
    pub lab: String,

    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Bring up N hosts (h1..hN) and wait until each answers SSH.
    ///
    /// Idempotent: running it again restarts stopped hosts, and a larger N
    /// adds hosts (it never removes any). The first run on a machine builds
    /// the shared base root filesystem with debootstrap (about a minute;
    /// each host kind has its own).
    Up {
        /// Number of hosts, 1 to 240.
        #[arg(value_parser = clap::value_parser!(u16).range(1..=240))]
        count: u16,
        /// pid 1 of the hosts: `runit` (sshd under runsvdir), `systemd`
        /// (systemd with journald; sshd is ssh.service) or `openrc`
        /// (openrc-init; sshd is the OpenRC service `sshd`). Chosen at a
        /// lab's first `up`; each has its own cached base.
        #[arg(long, default_value = "runit", value_name = "INIT", conflicts_with = "kinds",
              value_parser = clap::builder::PossibleValuesParser::new(["runit", "systemd", "openrc"])
                  .map(|s| s.parse::<Init>().expect("possible values parse")))]
        init: Init,
        /// CPU architecture of the hosts, `amd64` or `arm64` (default: this
        /// machine's). A foreign one runs under qemu-user (needs
        /// qemu-user-static; `up` registers it with binfmt_misc); systemd
        /// cannot run so and is refused.
        #[arg(long, value_name = "ARCH", conflicts_with = "kinds",
              value_parser = clap::builder::PossibleValuesParser::new(["amd64", "arm64"])
                  .map(|s| s.parse::<Arch>().expect("possible values parse")))]
        arch: Option<Arch>,
        /// The hosts' userland: `debian`, or `busybox` (Alpine's minimal
        /// one: /bin/sh is busybox ash, core utilities are busybox applets,
        /// no bash).
        #[arg(long, default_value = "debian", value_name = "USERLAND", conflicts_with = "kinds",
              value_parser = clap::builder::PossibleValuesParser::new(["debian", "busybox"])
                  .map(|s| s.parse::<Userland>().expect("possible values parse")))]
        userland: Userland,
        /// A mixed lab: one kind per host, h1 first, comma-separated, as
        /// many as N (`up 4 --kinds runit,systemd,arm64-runit,openrc`). A
        /// kind is `[ARCH-][busybox-]INIT[+containers]`. Instead of --init,
        /// --arch and --userland, which make every host one kind.
        #[arg(long, value_delimiter = ',', value_name = "KIND,...", value_parser = parse_kind)]
        kinds: Vec<Kind>,
        /// Make every host able to run containers (runc, dockerd): its own
        /// cgroup in every hierarchy mounted inside it, `pivot_root` into
        /// its root, and a store on this machine's disk at
        /// /var/lib/drover-containers and /var/lib/docker. Native hosts
        /// only (not arm64). The same as `+containers` on each kind.
        #[arg(long)]
        containers: bool,
        /// Run an SSH certificate authority: each host's host key is
        /// certified (no pins needed) and root logs in only with the lab
        /// key's certificate. Chosen at a lab's first `up`.
        #[arg(long)]
        ssh_ca: bool,
        /// Put the hosts behind a jump host: adds `bastion` (address .10)
        /// and leaves this machine a route to it alone, so the hosts are
        /// reachable only through it; `lab inventory` then writes
        /// `proxy-jump`. Kept by later `up`s of the lab.
        #[arg(long)]
        bastion: bool,
    },
    /// Print an inventory.toml for the lab (root login by key, host keys
    /// pinned; with --ssh-ca, the CA trusted instead).
    Inventory {
        /// Print `address,user,password` lines for the non-root user instead.
        #[arg(long)]
        csv: bool,
    },
    /// Inject a fault into hosts.
    ///
    /// FAULT is one of: `delay 100ms [jitter 10ms] [loss 1%] [rate 1mbit]`
    /// (round-trip delay, half each way; loss and rate per direction),
    /// `down` (link cut: connections time out), `freeze` (every process of
    /// the host stopped with SIGSTOP) or `thaw` (SIGCONT).
    #[command(verbatim_doc_comment)]
    Fault {
        /// `all`, one host (`h3`) or a comma list (`h1,h3`).
        host: String,
        /// The fault and its parameters.
        #[arg(required = true, num_args = 1.., value_name = "FAULT")]
        fault: Vec<String>,
    },
    /// Reboot one host: kill all its processes, start its init again from
    /// its root as it is on disk, wait until it answers SSH.
    Reboot { host: String },
    /// Remove every fault from hosts (`all`, `h3` or `h1,h3`).
    Heal { host: String },
    /// Show each host's address, state (up, down, frozen, stopped) and link faults.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove everything the lab created, even after a crash (keeps the base cache).
    Down {
        /// Remove every lab on this machine.
        #[arg(long)]
        all: bool,
    },
    /// Internal: the userspace link emulator that `fault` starts when the
    /// kernel has no netem.
    #[command(name = "__wire", hide = true)]
    Wire {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn run(args: LabArgs) -> anyhow::Result<ExitStatus> {
    let mut config = LabConfig::from_env();
    config.wire_helper = Some(WireHelper {
        program: std::env::current_exe().context("locating the drover binary")?,
        args: vec!["lab".into(), "__wire".into()],
    });
    let name = args.lab.as_str();
    let result = match args.command {
        LabCommand::Up { count, init, arch, userland, kinds, containers, ssh_ca, bastion } => {
            let kinds = if kinds.is_empty() {
                vec![Kind::native(init).with_arch(arch.unwrap_or_else(Arch::native)).with_userland(userland)]
            } else {
                kinds
            };
            let kinds: Vec<Kind> =
                kinds.into_iter().map(|k| if containers { k.with_containers() } else { k }).collect();
            return up(&config, name, count, &kinds, UpFlags { ssh_ca, bastion });
        }
        LabCommand::Inventory { csv } => Lab::open_with(&config, name).map(|lab| {
            print!("{}", if csv { lab.inventory_csv() } else { lab.inventory_toml() });
        }),
        LabCommand::Fault { host, fault } => fault_cmd(&config, name, &host, &fault),
        LabCommand::Reboot { host } => Lab::open_with(&config, name).and_then(|lab| {
            for (host, took) in lab.reboot(&host)? {
                println!("{host} rebooted, answers SSH again after {:.1}s", took.as_secs_f64());
            }
            Ok(())
        }),
        LabCommand::Heal { host } => Lab::open_with(&config, name).and_then(|mut lab| {
            lab.heal(&host)?;
            println!("healed {host}");
            Ok(())
        }),
        LabCommand::Status { json } => Lab::open_with(&config, name).and_then(|lab| status(&lab, json)),
        LabCommand::Down { all: true } => drover_lab::down_all(&config).map(|rs| rs.iter().for_each(print_down)),
        LabCommand::Down { all: false } => drover_lab::down(&config, name).map(|r| print_down(&r)),
        LabCommand::Wire { args } => {
            drover_lab::wire::WireSpec::from_args(&args).and_then(|s| drover_lab::wire::run(&s))
        }
    };
    result.map_err(lab_error)?;
    Ok(ExitStatus::Success)
}

/// Refusals keep their exit code (3); everything else is an ordinary error.
fn lab_error(e: LabError) -> anyhow::Error {
    if e.is_refusal() {
        Refusal::Lab(e.to_string()).into()
    } else {
        e.into()
    }
}

/// `up`'s switches, chosen at a lab's first `up`.
struct UpFlags {
    ssh_ca: bool,
    bastion: bool,
}

/// `--kinds`' items.
fn parse_kind(s: &str) -> Result<Kind, String> {
    s.trim().parse()
}

fn up(config: &LabConfig, name: &str, count: u16, kinds: &[Kind], flags: UpFlags) -> anyhow::Result<ExitStatus> {
    let bar = ProgressBar::new(u64::from(count));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ready ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message("preparing");
    let on_progress = |p: Progress<'_>| match p {
        Progress::BuildingBase { dir } => {
            bar.set_message(format!(
                "building a base root filesystem once (about a minute; several for another architecture) in {}",
                dir.display()
            ));
        }
        Progress::Planned { total, .. } => {
            bar.set_length(total as u64);
            bar.set_message("starting hosts");
        }
        Progress::Started { .. } => {}
        Progress::Ready { .. } => bar.inc(1),
    };
    let result = drover_lab::up(config, name, usize::from(count), kinds, flags.ssh_ca, flags.bastion, &on_progress);
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e @ LabError::HostsNotReady { .. }) => {
            eprintln!("error: {e}");
            eprintln!(
                "hint: `drover lab status{}` shows the hosts; `drover lab down{0}` removes the lab",
                lab_flag(name)
            );
            return Ok(ExitStatus::HostsFailed);
        }
        Err(e) => return Err(lab_error(e)).with_context(|| format!("bringing up lab {name:?}")),
    };
    let lab = &report.lab;
    let hosts = lab.hosts();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "lab {name:?}: {} {}hosts up ({} new) in {:.1}s",
        hosts.len(),
        match hosts.first().map(|h| h.kind) {
            Some(k) if hosts.iter().all(|h| h.kind == k) => format!("{k} "),
            _ => String::new(),
        },
        report.added,
        report.elapsed.as_secs_f64()
    );
    if hosts.first().is_some_and(|f| hosts.iter().any(|h| h.kind != f.kind)) {
        let kinds: Vec<String> = hosts.iter().map(|h| format!("{} {}", h.name, h.kind)).collect();
        let _ = writeln!(out, "  kinds: {}", kinds.join(", "));
    }
    if let Some(built) = report.base_built_in {
        let _ = writeln!(out, "  (including the one-time base build: {:.0}s)", built.as_secs_f64());
    }
    if let Some(r) = &report.raised {
        let _ = writeln!(out, "  raised {} from {} to {} (each systemd host's init holds ~5)", r.name, r.from, r.to);
    }
    if let (Some(first), Some(last)) = (hosts.first(), hosts.last()) {
        let _ = writeln!(
            out,
            "  hosts {}..{} = {}..{}, controller {}",
            first.name,
            last.name,
            first.address,
            last.address,
            lab.gateway()
        );
        match lab.bastion() {
            Some(b) => {
                let _ = writeln!(out, "  behind bastion {}: this machine has no route to the hosts", b.address);
                let _ = writeln!(
                    out,
                    "  root by key:   ssh -i {0} -J root@{1} root@{2}",
                    lab.key_path().display(),
                    b.address,
                    first.address
                );
            }
            None => {
                let _ = writeln!(out, "  root by key:   ssh -i {} root@{}", lab.key_path().display(), first.address);
            }
        }
        let _ = writeln!(out, "  user {} (password, sudo): drover lab inventory --csv{}", lab.user(), lab_flag(name));
    }
    let _ = writeln!(out, "next: drover lab inventory{} > inventory.toml", lab_flag(name));
    if lab.bastion().is_some() {
        let _ = writeln!(out, "      drover trust   (pins the bastion's key: hosts are reached through it)");
    }
    Ok(ExitStatus::Success)
}

fn fault_cmd(config: &LabConfig, name: &str, host: &str, words: &[String]) -> Result<(), LabError> {
    let fault = Fault::parse(words)?;
    let mut lab = Lab::open_with(config, name)?;
    lab.fault(host, fault)?;
    println!("{host}: {}", words.join(" "));
    Ok(())
}

fn status(lab: &Lab, json: bool) -> Result<(), LabError> {
    let rows = lab.status();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("status serialises"));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<6} {:<15} {:<20} {:<8} FAULTS", "HOST", "ADDRESS", "KIND", "STATE");
    for r in rows {
        let (address, kind, state) = (r.address.to_string(), r.kind.to_string(), r.state.to_string());
        let _ = writeln!(out, "{:<6} {address:<15} {kind:<20} {state:<8} {}", r.host, r.faults);
    }
    Ok(())
}

fn print_down(r: &DownReport) {
    if r.existed {
        println!(
            "lab {:?} removed ({} processes, {} mounts, {} namespaces, {} links)",
            r.name, r.processes, r.mounts, r.netns, r.links
        );
    } else {
        println!("lab {:?} was not up; nothing to remove", r.name);
    }
}

/// ` --lab NAME` when it is not the default, for copy-paste hints.
fn lab_flag(name: &str) -> String {
    if name == drover_lab::DEFAULT_LAB {
        String::new()
    } else {
        format!(" --lab {name}")
    }
}
