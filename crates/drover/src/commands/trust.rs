//! `drover trust`: record hosts' SSH keys in the project's `known_hosts`,
//! and their jump hosts' (see [`super::trust_jump`]).
//!
//! The explicit step that replaces "accept on first use": drover never
//! connects to a host whose key is not pinned, and a changed key stops it.
//! Run this once for new hosts (e.g. an imported CSV), check the printed
//! fingerprints against what the provider shows, and commit the file. With
//! `--expect FILE` the check is drover's: only keys listed there are pinned
//! (see [`crate::pins`]).

use std::io::Write;
use std::time::Duration;

use drover_spec::Project;

use crate::exit::ExitStatus;
use crate::pins::Pins;
use crate::select::select;
use crate::transport::{ssh_target, Timeouts};

use super::trust_jump;

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// Only these hosts: host, group or role names, comma-separated.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Also replace keys that are pinned but differ (after a reinstall).
    #[arg(long)]
    pub replace: bool,
    /// Pin only keys whose fingerprint this file lists (lines `HOST SHA256:…`,
    /// HOST a name or address; see docs/security.md). A host missing from it
    /// or presenting another key is refused.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<std::path::PathBuf>,
}

pub fn run(project_dir: &std::path::Path, args: TrustArgs) -> anyhow::Result<ExitStatus> {
    let project = Project::load(project_dir)?;
    let pins = args.expect.as_deref().map(Pins::load).transpose()?;
    let mut hosts = select(&project.hosts, args.hosts.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let t = Timeouts { connect: project.settings.connect_timeout, op: project.settings.connect_timeout };
    let path = project.dir.join("known_hosts");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap_or_default().lines().map(String::from).collect();
    // Jump hosts first: the hosts behind them are scanned through them.
    let mut failed = trust_jump::pin_hops(&rt, &mut hosts, &mut lines, args.replace, pins.as_ref(), t);
    let scans = rt.block_on(async {
        let tasks: Vec<_> = hosts
            .iter()
            .map(|h| {
                let target = ssh_target(h, t);
                tokio::spawn(async move { drover_ssh::scan_host_key_through(&target).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(|e| anyhow::anyhow!("{e}")).and_then(|r| r.map_err(anyhow::Error::from)));
        }
        out
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    for (h, scan) in hosts.iter().zip(scans) {
        let key = match scan {
            Ok(k) => k,
            Err(e) => {
                eprintln!("{}: {e:#}", h.name);
                failed = true;
                continue;
            }
        };
        let fp = drover_ssh::fingerprint(&key).unwrap_or_default();
        if let Some(p) = &pins {
            if let Some(why) = p.refusal(&h.name, &fp, &p.check(&h.name, &h.address, &fp)) {
                eprintln!("{why}");
                failed = true;
                continue;
            }
        }
        let base = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        if h.host_keys.iter().any(|k| base(k) == base(&key)) {
            println!("{:<16} {fp}  already pinned", h.name);
            continue;
        }
        // Keys pinned in inventory.toml (`host-key`) rather than in
        // known_hosts: trust manages only known_hosts, and both kinds are
        // accepted, so replacing here would leave the old key trusted.
        let in_known = |k: &str| {
            lines.iter().any(|l| {
                let mut w = l.split_whitespace();
                w.next().is_some_and(|who| who.split(',').any(|x| x == h.name || x == h.address))
                    && w.collect::<Vec<_>>().join(" ") == base(k)
            })
        };
        let inventory_pins: Vec<&String> = h.host_keys.iter().filter(|k| !in_known(k)).collect();
        if args.replace && !inventory_pins.is_empty() {
            // Replaced where it is pinned, so the old key does not stay
            // trusted beside the new one.
            lines.retain(|l| {
                !l.split_whitespace().next().is_some_and(|w| w.split(',').any(|x| x == h.name || x == h.address))
            });
            match replace_inventory_pin(&project.dir, &h.name, &base(&key)) {
                Ok(()) => println!("{:<16} {fp}  pinned (host-key replaced in inventory.toml)", h.name),
                Err(e) => {
                    eprintln!("{:<16} {fp}  DIFFERS from the key pinned by `host-key` in {}; {e}", h.name, h.origin);
                    failed = true;
                }
            }
            continue;
        }
        if !h.host_keys.is_empty() && !args.replace {
            eprintln!(
                "{:<16} {fp}  DIFFERS from the pinned key; not changed (use --replace if the host was reinstalled)",
                h.name
            );
            failed = true;
            continue;
        }
        let who = format!("{},{}", h.name, h.address);
        lines.retain(|l| {
            !l.split_whitespace().next().is_some_and(|w| w.split(',').any(|x| x == h.name || x == h.address))
        });
        lines.push(format!("{who} {}", base(&key)));
        println!("{:<16} {fp}  pinned", h.name);
    }
    let mut f = std::fs::File::create(&path)?;
    for l in &lines {
        writeln!(f, "{l}")?;
    }
    Ok(if failed { ExitStatus::HostsFailed } else { ExitStatus::Success })
}

/// Set `[hosts.NAME] host-key` in the project's inventory.toml to `key`,
/// keeping the file's comments and layout.
fn replace_inventory_pin(dir: &std::path::Path, name: &str, key: &str) -> Result<(), String> {
    let path = dir.join("inventory.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read inventory.toml: {e}"))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("cannot edit inventory.toml: {e}"))?;
    let entry = doc
        .get_mut("hosts")
        .and_then(|h| h.get_mut(name))
        .and_then(|h| h.as_table_like_mut())
        .filter(|t| t.contains_key("host-key"))
        .ok_or("its `host-key` is not in a [hosts] table drover can edit: edit or remove it by hand")?;
    entry.insert("host-key", toml_edit::value(key));
    std::fs::write(&path, doc.to_string()).map_err(|e| format!("cannot write inventory.toml: {e}"))
}
