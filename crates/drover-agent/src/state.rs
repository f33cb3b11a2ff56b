//! The agent's persistent bookkeeping, each file replaced atomically:
//!
//! - `state.json`: current generation, next number, the transition counter
//!   (`seq`) that marks a transition as committed, kept and failed numbers.
//! - `gens/<n>.manifest`: the manifest of generation n (postcard).
//! - `statcache.json`: stat identity → hash of managed files, so a no-op check
//!   hashes nothing.
//! - `pending.json`: a generation waiting for the controller's confirmation
//!   (and, marked with a [`RebootMark`], to be confirmed after a reboot).
//! - `boot.json`: the boots the boot-time hook has seen ([`BootRecord`]).

use std::collections::BTreeMap;
use std::fs;

use drover_proto::{Hash, Manifest};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::fsops::write_atomic;
use crate::layout::Layout;
use crate::pathstate::StatId;
use crate::{Context, Result};

/// How many generations are kept for rollback (the current one included).
pub const KEEP_GENERATIONS: usize = 5;
/// How many failed generations' manifests are kept for inspection.
pub const KEEP_FAILED: usize = 3;
/// Incomplete transfers older than this are dropped (a resume after longer
/// starts over).
pub const PARTIAL_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// Backups of replaced unmanaged files stay this long after their
/// generation is no longer kept.
pub const BACKUP_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub current: Option<u64>,
    pub next: u64,
    /// Incremented by every committed transition; a journal with a higher
    /// sequence number than this was never committed.
    pub seq: u64,
    pub kept: Vec<u64>,
    pub failed: Vec<u64>,
    /// Parent directories drover created (no entry names them): removed
    /// again, when empty, once no generation needs them.
    #[serde(default)]
    pub dirs: std::collections::BTreeSet<String>,
}

/// A committed generation that has not finished activating: its services
/// are being (re)started and checked, or it waits for the controller's
/// confirmation. Written *before* the first service is touched, so an agent
/// killed anywhere after the commit leaves a record that recovery acts on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub generation: u64,
    /// Unix time in milliseconds after which the watchdog reverts
    /// (meaningful in [`Phase::AwaitingConfirm`]).
    pub deadline_ms: u64,
    /// The transition that activated it; only that one may be reverted.
    pub seq: u64,
    #[serde(default)]
    pub phase: Phase,
    /// Set when the generation is to be confirmed after a reboot (see
    /// [`crate::boot`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootMark>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Files are swapped; services are restarting and being health-checked.
    /// Found by recovery, it means the agent died before the generation
    /// proved healthy: recovery reverts it.
    Starting,
    /// Healthy; reverted unless confirmed before the deadline.
    #[default]
    AwaitingConfirm,
}

/// On a pending generation: it is to be confirmed after a reboot (see
/// [`crate::boot`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RebootMark {
    /// Given to the controller at boot, from the moment the hook runs.
    pub confirm_ms: u64,
    /// Boots into this generation so far (0: not yet rebooted).
    pub boots: u32,
}

/// Boots the hook has seen: the controller compares the count before and
/// after a reboot to know the host really went through one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootRecord {
    pub boots: u64,
    pub last_ms: u64,
}

/// How many boots the boot-time hook has counted (0: none, or no hook).
pub fn boots(layout: &Layout) -> u64 {
    read_json::<BootRecord>(&layout.boot_record()).ok().flatten().map_or(0, |b| b.boots)
}

pub type StatCache = BTreeMap<String, (StatId, Hash)>;

pub fn read_json<T: DeserializeOwned>(path: &std::path::Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).ctx(|| format!("parse {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::AgentError::new(format!("read {}: {e}", path.display()))),
    }
}

pub fn write_json<T: Serialize>(path: &std::path::Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).ctx(|| "encode json".into())?;
    write_atomic(path, &bytes)
}

impl StateFile {
    pub fn load(layout: &Layout) -> Result<StateFile> {
        Ok(read_json(&layout.state_file())?.unwrap_or(StateFile { next: 1, ..Default::default() }))
    }
    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_json(&layout.state_file(), self)
    }
}

/// Stored manifests start with this tag, so an agent reading a manifest
/// written in another format says so instead of misreading it. Bump it (and
/// keep a reader for the old tag) whenever `Manifest` changes shape.
/// DRM2: `ServiceSpec.after` (protocol 13); DRM1 manifests are read by
/// [`v1`], with no start order.
const MANIFEST_TAG: &[u8; 4] = b"DRM2";

pub fn load_manifest(layout: &Layout, generation: u64) -> Result<Manifest> {
    let path = layout.manifest(generation);
    let bytes = fs::read(&path).ctx(|| format!("read {}", path.display()))?;
    if let Some(body) = bytes.strip_prefix(v1::TAG) {
        return postcard::from_bytes::<v1::Manifest>(body).map(Into::into).ctx(|| format!("decode {}", path.display()));
    }
    let Some(body) = bytes.strip_prefix(MANIFEST_TAG) else {
        crate::bail!("{}: stored in a manifest format this agent does not know", path.display());
    };
    postcard::from_bytes(body).ctx(|| format!("decode {}", path.display()))
}

/// Manifests stored by agents before start order (`DRM1`): generations an
/// upgraded agent may still roll back to.
mod v1 {
    use drover_proto::{Entry, HealthCheck, Setup, Supervisor};
    use serde::Deserialize;

    pub const TAG: &[u8; 4] = b"DRM1";

    #[derive(Deserialize)]
    pub struct Manifest {
        entries: Vec<Entry>,
        services: Vec<ServiceSpec>,
        setup: Box<Setup>,
    }

    #[derive(Deserialize)]
    struct ServiceSpec {
        name: String,
        supervisor: Supervisor,
        triggers: Vec<String>,
        reload_triggers: Vec<String>,
        health: Option<HealthCheck>,
    }

    impl From<Manifest> for drover_proto::Manifest {
        fn from(m: Manifest) -> Self {
            let services = m
                .services
                .into_iter()
                .map(|s| drover_proto::ServiceSpec {
                    name: s.name,
                    supervisor: s.supervisor,
                    triggers: s.triggers,
                    reload_triggers: s.reload_triggers,
                    health: s.health,
                    after: Vec::new(),
                })
                .collect();
            drover_proto::Manifest { entries: m.entries, services, setup: m.setup }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A DRM1 manifest (the old shape, encoded as an old agent did)
        /// reads back whole, with no start order.
        #[test]
        fn a_manifest_stored_before_start_order_reads_back() {
            /// name, supervisor, triggers, reload triggers, health.
            type OldSpec = (String, Supervisor, Vec<String>, Vec<String>, Option<HealthCheck>);
            #[derive(serde::Serialize)]
            struct Old<'a> {
                entries: &'a [Entry],
                services: Vec<OldSpec>,
                setup: Box<Setup>,
            }
            let old = Old {
                entries: &[],
                services: vec![("web".into(), Supervisor::Runit, vec!["/etc/web".into()], vec![], None)],
                setup: Box::default(),
            };
            let bytes = postcard::to_stdvec(&old).unwrap();
            let m: drover_proto::Manifest = postcard::from_bytes::<Manifest>(&bytes).unwrap().into();
            assert_eq!(m.services.len(), 1);
            assert_eq!(
                (m.services[0].name.as_str(), m.services[0].triggers.as_slice()),
                ("web", &["/etc/web".to_string()][..])
            );
            assert!(m.services[0].after.is_empty());
        }
    }
}

pub fn save_manifest(layout: &Layout, generation: u64, m: &Manifest) -> Result<()> {
    let mut bytes = MANIFEST_TAG.to_vec();
    bytes.extend(postcard::to_stdvec(m).ctx(|| "encode manifest".into())?);
    write_atomic(&layout.manifest(generation), &bytes)
}

pub fn load_statcache(layout: &Layout) -> StatCache {
    read_json(&layout.statcache()).ok().flatten().unwrap_or_default()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
