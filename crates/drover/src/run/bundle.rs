//! Runs whose desired state is not compiled from the project here: from a
//! signed bundle (`apply --bundle`), or compiled but shipped through peer
//! relays (`--relay`). Chooses the delivery strategy (`crate::host::
//! bundle_source`, `crate::host::relay`) and the hosts; the run itself is the
//! same as any other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use drover_bundle::{Bundle, HostEntry, PublicKey};
use drover_spec::{Host, Project};

use super::refusal::Refusal;
use super::spec::Settings;
use crate::host::bundle_source::{BundleSource, RelayedProject};
use crate::host::relay::Relay;
use crate::host::StateSource;

/// The controller's default key for checking bundles (hosts use the same path).
pub const DEFAULT_PUBKEY: &str = "/etc/drover/bundle.pub";

/// A signed bundle to apply from.
#[derive(Debug, Clone)]
pub struct SignedBundle {
    pub path: PathBuf,
    /// [default: [`DEFAULT_PUBKEY`]]
    pub pubkey: Option<PathBuf>,
    /// [default: FILE.minisig]
    pub sig: Option<PathBuf>,
}

/// Peer relay: hosts that hold a large blob serve it to the others.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    pub port: u16,
    pub min_size: u64,
    pub fanout: usize,
}

/// The source, every host it knows, and the run settings it carries.
pub struct Delivery {
    pub source: Arc<dyn StateSource>,
    pub hosts: Vec<Host>,
    pub settings: Settings,
}

/// From `bundle` (verified) when given, else the project compiled here and
/// relayed; `relay` enables peer relay for either.
pub fn delivery(dir: &Path, bundle: Option<&SignedBundle>, relay: Option<RelayOptions>) -> anyhow::Result<Delivery> {
    let relay = relay.map(|r| Relay::new(r.port, r.min_size, r.fanout, 60_000)).transpose()?;
    Ok(match bundle {
        Some(sb) => {
            let b = open_verified(&sb.path, sb.pubkey.as_deref(), sb.sig.as_deref())?;
            eprintln!(
                "bundle {}: good signature; project {} revision {}",
                sb.path.display(),
                b.index.project,
                b.index.revision
            );
            let hosts = bundle_hosts(dir, &b)?;
            let settings = Settings::from(&b.index.settings);
            Delivery { source: Arc::new(BundleSource { bundle: b, relay }), hosts, settings }
        }
        None => {
            let project = Arc::new(crate::store::load_project(dir)?);
            super::spec::preflight(&project, &project.hosts)?;
            let settings = Settings::from(&project.settings);
            let hosts = project.hosts.clone();
            let relay = relay.context("internal: relay expected")?;
            Delivery { source: Arc::new(RelayedProject { project, relay }), hosts, settings }
        }
    })
}

/// Open a bundle and check its signature (and its embedded index signature).
pub fn open_verified(bundle: &Path, pubkey: Option<&Path>, sig: Option<&Path>) -> anyhow::Result<Bundle> {
    let key_path = pubkey.map_or_else(|| PathBuf::from(DEFAULT_PUBKEY), Path::to_path_buf);
    if !key_path.exists() {
        return Err(Refusal::NoPublicKey(key_path).into());
    }
    let key = PublicKey::from_file(&key_path)?;
    let sig = sig.map_or_else(|| drover_bundle::sig_path(bundle), Path::to_path_buf);
    let b = Bundle::open_verified(bundle, &sig, &key)?;
    if b.index_signature().is_some() {
        b.verify_embedded(&key)?;
    }
    Ok(b)
}

/// Hosts to connect to: the project's inventory entries when there is a
/// project (they may carry passwords), else the bundle's.
fn bundle_hosts(dir: &Path, b: &Bundle) -> anyhow::Result<Vec<Host>> {
    let project = if dir.join("drover.toml").exists() { Some(Project::load(dir)?) } else { None };
    Ok(b.index
        .hosts
        .iter()
        .map(|e| match project.as_ref().and_then(|p| p.hosts.iter().find(|h| h.name == e.name)) {
            Some(h) => h.clone(),
            None => from_entry(e),
        })
        .collect())
}

fn from_entry(e: &HostEntry) -> Host {
    Host {
        name: e.name.clone(),
        address: e.address.clone(),
        port: e.port,
        user: e.user.clone(),
        auth: drover_spec::Auth { key: e.key.as_ref().map(PathBuf::from), password: None },
        host_keys: e.host_keys.clone(),
        // A bundle's index records no jump hosts: applying a bundle to hosts
        // behind a bastion needs the project beside it.
        proxy_jump: Vec::new(),
        roles: e.roles.clone(),
        groups: e.groups.clone(),
        vars: Default::default(),
        origin: "bundle".into(),
    }
}
