//! The lab's state file: what `up` made and which faults are applied.
//!
//! It is a record for `inventory`, `status` and `fault`, never the only way
//! to find what exists: `down` also looks at the kernel and at the mount
//! table, so a lost or corrupt state file does not leak namespaces.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::fault::Netem;
use crate::init::Init;
use crate::kind::Kind;

/// Bumped on incompatible changes; an unknown version reads as corrupt.
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct LabState {
    pub version: u32,
    pub name: String,
    /// 0..=254: the subnet `10.213.<index>.0/24` and the `dl<index>` prefix.
    pub index: u8,
    /// pid 1 of the hosts of the lab's first `up` (the first kind's, in a
    /// mixed lab; each host's own is in its record); state files from
    /// before the choice existed are runit.
    #[serde(default)]
    pub init: Init,
    /// The base root filesystem of the first kind (hosts recorded without
    /// their own `base` stack on it).
    pub base: PathBuf,
    pub hosts: Vec<HostRecord>,
    /// Made with `--ssh-ca`: host keys certified, logins by certificate.
    #[serde(default)]
    pub ssh_ca: bool,
    /// The jump host of a lab brought up with `--bastion` (host number 0):
    /// the only lab address the controller's namespace has a route to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<HostRecord>,
    /// Keyed by host name; absent means healthy.
    #[serde(default)]
    pub faults: BTreeMap<String, FaultRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct HostRecord {
    pub n: u16,
    pub name: String,
    pub address: Ipv4Addr,
    /// `ssh-ed25519 AAAA…`, without comment.
    pub host_key: String,
    /// What the host is; absent in state files from before kinds existed,
    /// where every host was a native Debian host of the lab's `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The base its overlay stacks on; absent as `kind` is: the lab's `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
}

/// The faults applied to one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FaultRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netem: Option<Netem>,
    /// `kernel` (tc netem) or `userspace` (link emulator process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default)]
    pub down: bool,
    #[serde(default)]
    pub frozen: bool,
}

impl FaultRecord {
    pub(crate) fn is_healthy(&self) -> bool {
        self.netem.is_none() && !self.down && !self.frozen
    }
}

impl LabState {
    pub(crate) fn new(name: &str, index: u8, init: Init, base: PathBuf) -> LabState {
        LabState {
            version: VERSION,
            name: name.to_string(),
            index,
            init,
            base,
            hosts: Vec::new(),
            ssh_ca: false,
            bastion: None,
            faults: BTreeMap::new(),
        }
    }

    /// Host record `h`'s kind.
    pub(crate) fn kind_of(&self, h: &HostRecord) -> Kind {
        h.kind.unwrap_or(Kind::native(self.init))
    }

    /// The base host record `h`'s overlay stacks on.
    pub(crate) fn base_of<'a>(&'a self, h: &'a HostRecord) -> &'a Path {
        h.base.as_deref().unwrap_or(&self.base)
    }

    /// `Ok(None)` when there is no state file.
    pub(crate) fn load(path: &Path) -> Result<Option<LabState>, LabError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io("read", path)(e)),
        };
        let state: LabState = serde_json::from_str(&text)
            .map_err(|source| LabError::CorruptState { path: path.to_path_buf(), source })?;
        if state.version != VERSION {
            let source = serde::de::Error::custom(format!("state version {} (expected {VERSION})", state.version));
            return Err(LabError::CorruptState { path: path.to_path_buf(), source });
        }
        Ok(Some(state))
    }

    /// Write to a temporary file in the same directory, then rename.
    pub(crate) fn save(&self, path: &Path) -> Result<(), LabError> {
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_string_pretty(self).expect("state serialises");
        let mut f = fs::File::create(&tmp).map_err(LabError::io("create", &tmp))?;
        f.write_all(json.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(LabError::io("write", &tmp))?;
        fs::rename(&tmp, path).map_err(LabError::io("rename into place", path))
    }
}
