//! `drover-agent install BUNDLE`: install a signed bundle on this host with
//! no controller and no network (a USB stick), through the same [`Engine`]
//! as a controller-driven apply.
//!
//! ```text
//! drover-agent install site.drv [--sig site.drv.minisig] [--pubkey PATH]
//!                               [--host NAME] [--root DIR]
//! ```
//!
//! Order matters, so that a refusal changes nothing on the host:
//! 1. the signature of the whole file is checked (`--pubkey`, else
//!    `/etc/drover/bundle.pub`), in one read that also keeps the index;
//! 2. the bundle's agent for this host's machine (`uname -m`) is chosen
//!    ([`agent`]; none: refused, naming the machine and the ones carried);
//!    the host's manifest is chosen and validated (paths must be absolute and
//!    normalised: no `..`), its supervisor checked against this host's, and,
//!    when it holds secrets, the key they are sealed to against this host's
//!    SSH host key ([`crate::sealed`]);
//! 3. every blob this host lacks is extracted to `partial/` (0600), each
//!    verified against its blake3 from the signed index (a sealed one is
//!    decrypted and checked against the manifest's clear hash); only when all are good do
//!    they move into the blob store; the agent goes to
//!    `/var/lib/drover/agent/` (where a controller would run it from);
//! 4. the engine diffs and activates, as for `Apply`.
//!
//! Steps 1–2 write nothing at all; a failure in step 3 removes what it
//! staged.
//!
//! This module also answers `BundleDiff` (a controller applying from a
//! bundle): the host's signed statement (its own entry from the bundle) is
//! checked with the host's key, and the manifest comes from it. With that
//! key present, [`require_signed`] refuses every other kind of change.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod agent;

use drover_bundle::seal::HostIdentity;
use drover_bundle::{Bundle, BundleError, HostEntry, HostStatement, Index, PublicKey};
use drover_proto::{ApplyOutcome, EntryKind, Hash, Manifest};

use crate::engine::Engine;
use crate::layout::Layout;
use crate::sealed::Opened;
use crate::{bail, blobs, facts, AgentError, Context, Result};

/// Where a host keeps the public key bundles must be signed with.
pub const HOST_KEY: &str = "/etc/drover/bundle.pub";

pub struct Args {
    pub bundle: PathBuf,
    pub sig: Option<PathBuf>,
    pub pubkey: Option<PathBuf>,
    pub host: Option<String>,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Args> {
        let mut out = Args { bundle: PathBuf::new(), sig: None, pubkey: None, host: None };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().ok_or_else(|| AgentError::new(format!("{a} needs a value")));
            match a.as_str() {
                "--sig" => out.sig = Some(val()?.into()),
                "--pubkey" => out.pubkey = Some(val()?.into()),
                "--host" => out.host = Some(val()?),
                "--root" => {
                    val()?;
                }
                s if s.starts_with('-') => bail!("install: unknown option {s}"),
                s if out.bundle.as_os_str().is_empty() => out.bundle = s.into(),
                s => bail!("install: unexpected argument {s}"),
            }
        }
        if out.bundle.as_os_str().is_empty() {
            bail!("usage: drover-agent install BUNDLE [--sig PATH] [--pubkey PATH] [--host NAME] [--root DIR]");
        }
        Ok(out)
    }
}

fn refused(e: impl std::fmt::Display) -> AgentError {
    AgentError::new(format!("refused: {e}; nothing was changed on this host"))
}

pub fn run(layout: &Layout, a: &Args, env: crate::hostenv::HostEnv) -> Result<()> {
    let host_key = layout.target(HOST_KEY);
    let key_path = match (&a.pubkey, host_key.exists()) {
        // The host's own key decides whenever it has one: `--pubkey` cannot
        // bring in another signer.
        (Some(p), true) => {
            let (given, own) = (read_key_text(p)?, read_key_text(&host_key)?);
            if given != own {
                return Err(refused(format!(
                    "{} is not this host's bundle key ({HOST_KEY}); this host installs only bundles signed with its key",
                    p.display()
                )));
            }
            host_key
        }
        (Some(p), false) => p.clone(),
        (None, true) => host_key,
        (None, false) => {
            return Err(refused(format!(
                "no public key to check the bundle with: pass --pubkey, or install it at {HOST_KEY}"
            )))
        }
    };
    let key = PublicKey::from_file(&key_path).map_err(refused)?;
    let sig = a.sig.clone().unwrap_or_else(|| drover_bundle::sig_path(&a.bundle));
    let bundle = Bundle::open_verified(&a.bundle, &sig, &key).map_err(refused)?;
    println!(
        "verified {} with {} (project {}, revision {})",
        a.bundle.display(),
        key_path.display(),
        bundle.index.project,
        bundle.index.revision
    );
    let machine = agent::machine();
    let (agent, agent_path) = agent::choose(layout, &bundle, &machine).map_err(refused)?;
    let f = facts::gather(layout, env);
    let entry = choose_host(&bundle.index, a.host.as_deref(), &f.hostname).map_err(refused)?;
    check_supervisor(&entry.manifest, f.supervisor).map_err(refused)?;
    let (entry, opened, identity) = crate::sealed::open_entry(layout, entry.clone()).map_err(refused)?;
    stage_blobs(layout, &bundle, &entry, &opened, identity.as_ref())?;
    match &agent_path {
        Some(p) => {
            agent::put(layout, &bundle, agent, p)?;
            println!("agent for {machine} ({}) installed at {}", agent.hash.short(), p.display());
        }
        None => println!("agent for {machine} ({}) already in place", agent.hash.short()),
    }

    let mut engine = Engine::open(layout.clone(), Duration::from_secs(30), env)?;
    let manifest = keep_unchanged_sources(entry.manifest.clone(), engine.current_manifest()?.as_ref());
    let generation = engine.host_state().next;
    let cand = engine.diff(manifest, generation)?;
    let changes = cand.changes.len();
    let mut progress = |m: String| println!("  {m}");
    match engine.apply(cand, 0, false, &mut progress)? {
        ApplyOutcome::Activated { generation, restarted, files_written, .. } => {
            println!(
                "host {}: generation {generation} activated ({changes} changes, {files_written} files written, restarted: {})",
                entry.name,
                if restarted.is_empty() { "none".to_string() } else { restarted.join(", ") }
            );
            Ok(())
        }
        ApplyOutcome::UpToDate { generation } => {
            println!("host {}: unchanged (generation {generation})", entry.name);
            Ok(())
        }
        ApplyOutcome::RolledBack { failed, to, reason, revert_errors, failure, .. } => {
            let left: String = revert_errors.iter().map(|e| format!("; the revert left a service down: {e}")).collect();
            let log: String = failure.iter().flat_map(|f| &f.log).map(|l| format!("\n  {l}")).collect();
            bail!("generation {failed} failed and was rolled back to {to:?}: {reason}{left}{log}")
        }
    }
}

/// A public key file's key line (comments aside), to compare two key files.
fn read_key_text(p: &Path) -> Result<String> {
    let text = fs::read_to_string(p).map_err(|e| refused(format!("{}: {e}", p.display())))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:")).collect())
}

/// `--host`, else the entry named like this host, else the only one.
fn choose_host<'a>(index: &'a Index, wanted: Option<&str>, hostname: &str) -> Result<&'a HostEntry, String> {
    let names = || index.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(w) = wanted {
        return index.host(w).ok_or_else(|| format!("host {w} is not in this bundle (it has: {})", names()));
    }
    if let Some(h) = index.host(hostname) {
        return Ok(h);
    }
    match &index.hosts[..] {
        [only] => Ok(only),
        _ => Err(format!("this host ({hostname}) is not in the bundle; pass --host (one of: {})", names())),
    }
}

fn check_supervisor(m: &Manifest, have: Option<drover_proto::Supervisor>) -> Result<(), String> {
    for s in &m.services {
        if Some(s.supervisor) != have {
            return Err(format!(
                "service {} was compiled for {}, but this host runs {}; build the bundle with --supervisor",
                s.name,
                s.supervisor.as_str(),
                have.map_or("no known supervisor", |s| s.as_str())
            ));
        }
    }
    Ok(())
}

/// Extract every blob the manifest needs and the host lacks; verify all
/// before any enters the store. A sealed blob is decrypted with the host's
/// key and checked against the manifest's clear hash.
fn stage_blobs(
    layout: &Layout,
    bundle: &Bundle,
    entry: &HostEntry,
    opened: &[Opened],
    identity: Option<&HostIdentity>,
) -> Result<()> {
    let m = &entry.manifest;
    let mut need: Vec<(Hash, u64)> = m
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { hash, size } => Some((hash, size)),
            EntryKind::Symlink { .. } | EntryKind::Dir => None,
        })
        // The packages not yet installed at their version travel too.
        .chain(crate::setup::missing(layout, m, false))
        .filter(|(h, _)| blobs::needs_transfer(layout, h))
        .collect();
    need.sort();
    need.dedup();
    let sealed_by_clear = |h: &Hash| opened.iter().find(|o| o.clear == *h);
    let cipher = |h: &Hash| sealed_by_clear(h).map(|s| s.cipher);
    for (h, _) in &need {
        if bundle.blob(&cipher(h).unwrap_or(*h)).is_none() {
            let base = bundle.index.base.as_ref().map_or(String::new(), |b| format!(" (revision {})", b.revision));
            return Err(refused(format!(
                "blob {} is not in this incremental bundle and not on this host: install its base bundle{base} first",
                h.short()
            )));
        }
    }
    let staged_dir = layout.partial_dir();
    let mut staged: Vec<(Hash, PathBuf)> = Vec::new();
    let res = (|| {
        for (h, _) in &need {
            let sealed = sealed_by_clear(h);
            let Some(e) = bundle.blob(&sealed.map_or(*h, |s| s.cipher)) else { continue };
            crate::fsops::private_dir(&staged_dir)?;
            let tmp = staged_dir.join(format!("bundle-{}", h.to_hex()));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .ctx(|| format!("create {}", tmp.display()))?;
            staged.push((*h, tmp.clone()));
            match (sealed, identity) {
                (Some(s), Some(id)) => {
                    let mut cipher = Vec::new();
                    bundle.extract(e, &mut cipher).map_err(refused)?;
                    let plain = id.open(&cipher, &s.clear, &s.path).map_err(refused)?;
                    f.write_all(&plain).ctx(|| format!("write {}", tmp.display()))?;
                }
                (Some(s), None) => return Err(refused(format!("{}: sealed, and no host key to open it", s.path))),
                (None, _) => bundle.extract(e, &mut f).map_err(refused)?,
            }
            f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        for (_, p) in &staged {
            let _ = fs::remove_file(p);
        }
        return Err(e);
    }
    crate::fsops::private_dir(&layout.blobs())?;
    for (h, p) in &staged {
        fs::rename(p, layout.blob(h)).ctx(|| format!("store blob {}", h.short()))?;
    }
    crate::fsops::sync_dir(&layout.blobs())
}

/// Templated entries whose generation-independent source (and attributes)
/// the host already has keep the host's rendering, as the controller does
/// (`drover::deploy::desired_state`): a file changes only when its inputs do.
pub fn keep_unchanged_sources(mut next: Manifest, current: Option<&Manifest>) -> Manifest {
    let Some(current) = current else { return next };
    for e in &mut next.entries {
        let Some(c) = current.entry(&e.path) else { continue };
        if e.source.is_some() && c.source == e.source && c.mode == e.mode && c.owner == e.owner && c.group == e.group {
            *e = c.clone();
        }
    }
    next
}

/// For `BundleDiff`: check the host statement's signature with the host's
/// key (when it has one: then a bundle signed by another key is refused) and
/// return the host entry in it (manifest and sealed secrets). The statement
/// holds this host's entry only (see `drover_bundle::statement`).
pub fn bundle_entry(layout: &Layout, statement: &[u8], signature: &str) -> Result<HostEntry> {
    let key_path = layout.target(HOST_KEY);
    if key_path.exists() {
        let key = PublicKey::from_file(&key_path).map_err(refused)?;
        drover_bundle::verify::verify_index(statement, Some(signature), &key, Path::new("bundle host statement"))
            .map_err(|e| refused(with_key(e, &key_path)))?;
    }
    let st = HostStatement::decode(statement).map_err(refused)?;
    Ok(st.host)
}

/// A host with a bundle key takes changes from signed bundles only: a plain
/// `Diff` or a `Rollback` (to a generation that may predate the key) is
/// refused. The opt-in is the key file itself (docs/bundle.md).
pub fn require_signed(layout: &Layout, what: &str) -> Result<()> {
    if layout.target(HOST_KEY).exists() {
        bail!(
            "refused: this host takes changes only from bundles signed with its key ({HOST_KEY}); \
             {what} is not one: apply with `drover apply --bundle FILE` (to go back, apply the earlier signed bundle)"
        );
    }
    Ok(())
}

fn with_key(e: BundleError, key: &Path) -> String {
    format!("{e} (host key {})", key.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_bundle::Settings;
    use drover_proto::Entry;

    fn entry(path: &str, content: &[u8], source: Option<u8>) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File { size: content.len() as u64, hash: Hash(*blake3::hash(content).as_bytes()) },
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            source: source.map(|s| Hash([s; 32])),
        }
    }

    fn host(name: &str) -> HostEntry {
        HostEntry::bare(name, "10.0.0.1")
    }

    #[test]
    fn host_is_chosen_by_flag_then_hostname_then_uniqueness() {
        let mut index = Index {
            created_ms: 0,
            project: "p".into(),
            revision: "r".into(),
            base: None,
            agents: vec![],
            settings: Settings { confirm_timeout_ms: 0, parallel: 1, connect_timeout_ms: 0 },
            hosts: vec![host("h1"), host("h2")],
            blobs: vec![],
            external: vec![],
        };
        assert_eq!(choose_host(&index, Some("h2"), "h1").unwrap().name, "h2");
        assert!(choose_host(&index, Some("h9"), "h1").unwrap_err().contains("h1, h2"));
        assert_eq!(choose_host(&index, None, "h1").unwrap().name, "h1");
        assert!(choose_host(&index, None, "other").unwrap_err().contains("--host"));
        index.hosts.truncate(1);
        assert_eq!(choose_host(&index, None, "other").unwrap().name, "h1");
    }

    #[test]
    fn templated_files_whose_source_is_unchanged_keep_the_hosts_rendering() {
        let current = Manifest {
            entries: vec![entry("/a", b"gen 3", Some(1)), entry("/b", b"gen 3", Some(2))],
            ..Default::default()
        };
        let next = Manifest {
            entries: vec![entry("/a", b"gen 1", Some(1)), entry("/b", b"gen 1", Some(9))],
            ..Default::default()
        };
        let kept = keep_unchanged_sources(next.clone(), Some(&current));
        assert_eq!(kept.entries[0], current.entries[0], "unchanged source re-rendered");
        assert_eq!(kept.entries[1], next.entries[1], "changed source kept stale");
        assert_eq!(keep_unchanged_sources(next.clone(), None), next);
    }

    #[test]
    fn args_parse() {
        let a: Vec<String> = ["b.drv", "--pubkey", "k.pub", "--host", "h3", "--root", "/x"].map(String::from).into();
        let p = Args::parse(&a).unwrap();
        assert_eq!(
            (p.bundle, p.pubkey, p.host),
            (PathBuf::from("b.drv"), Some(PathBuf::from("k.pub")), Some("h3".into()))
        );
        assert!(Args::parse(&["--bogus".to_string()]).is_err());
        assert!(Args::parse(&[]).is_err());
    }
}
