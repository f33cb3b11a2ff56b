//! `drover trust`: record hosts' SSH keys in the project's `known_hosts`,
//! and their jump hosts' (see [`super::trust_jump`]), or (`--ca`) a
//! certificate authority whose host certificates are trusted.
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
    /// Record an SSH certificate authority instead of scanning: FILE is its
    /// public key (`ca.pub`). Hosts presenting a host certificate it signed
    /// are then accepted without a pinned key (an `@cert-authority` line).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["replace", "expect"])]
    pub ca: Option<std::path::PathBuf>,
    /// With --ca: the hosts it is trusted for, as known_hosts patterns
    /// (`*.example.com,10.0.*`).
    #[arg(long, value_name = "PATTERNS", default_value = "*", requires = "ca")]
    pub ca_hosts: String,
}

pub fn run(project_dir: &std::path::Path, args: TrustArgs) -> anyhow::Result<ExitStatus> {
    if let Some(ca) = &args.ca {
        return record_ca(project_dir, ca, &args.ca_hosts);
    }
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
        let scan = match scan {
            Ok(k) => k,
            Err(e) => {
                eprintln!("{}: {e:#}", h.name);
                failed = true;
                continue;
            }
        };
        let key = scan.key;
        let fp = drover_ssh::fingerprint(&key).unwrap_or_default();
        if let Some(c) = &scan.certificate {
            let principals = if c.principals.is_empty() { "any host".into() } else { c.principals.join(",") };
            println!("{:<16} presents a host certificate: id {:?}, CA {}, for {principals}", h.name, c.key_id, c.ca);
            let trusted = h.ssh.cert_authorities.iter().any(|a| drover_ssh::fingerprint(a).is_ok_and(|f| f == c.ca));
            if trusted {
                println!("{:<16} {fp}  trusted by its @cert-authority: no pin needed", h.name);
                continue;
            }
        }
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

/// Append `@cert-authority PATTERNS KEY` to the project's known_hosts
/// (once: an identical line is not added again).
fn record_ca(dir: &std::path::Path, ca: &std::path::Path, patterns: &str) -> anyhow::Result<ExitStatus> {
    let text = std::fs::read_to_string(ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?;
    let key: String = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let fp = drover_ssh::fingerprint(&key)
        .map_err(|e| anyhow::anyhow!("{}: not an SSH public key ({e}); give the CA's .pub file", ca.display()))?;
    let path = dir.join("known_hosts");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap_or_default().lines().map(String::from).collect();
    let line = format!("@cert-authority {patterns} {key}");
    if lines.contains(&line) {
        println!("CA {fp} already trusted for {patterns}");
    } else {
        lines.push(line);
        std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        println!("CA {fp} trusted for {patterns}: host certificates it signs need no pinned key");
    }
    Ok(ExitStatus::Success)
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
