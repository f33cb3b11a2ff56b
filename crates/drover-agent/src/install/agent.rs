//! The agent a bundle carries for this host's machine, chosen by `uname -m`
//! and put where a controller runs agents from (`/var/lib/drover/agent/
//! agent-<blake3>`, root-owned, 0700 in a 0700 directory: what the
//! controller's bootstrap checks before it runs one). A controller of the
//! same version that reaches the host later then finds its agent in place
//! and uploads nothing; one of another version replaces it as usual.
//!
//! [`choose`] writes nothing (step 2 of `install`); [`put`] writes (step 3).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use drover_bundle::{AgentRef, Bundle};

use crate::layout::Layout;
use crate::{bail, Context, Result};

/// Where controllers run agents from on every host.
pub const AGENT_DIR: &str = "/var/lib/drover/agent";

/// This host's machine as its userland's `uname -m` prints it: the name the
/// controller's bootstrap goes by. Only if `uname` cannot run, the machine
/// this agent was built for.
pub fn machine() -> String {
    std::process::Command::new("uname")
        .arg("-m")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The bundle's agent for `machine`, and where it goes: `None` for the
/// path when it is there already. Refuses, naming the machine and the ones
/// the bundle carries, when there is none for this machine, or when it is
/// in the base bundle only and not on the host.
pub fn choose<'a>(layout: &Layout, bundle: &'a Bundle, machine: &str) -> Result<(&'a AgentRef, Option<PathBuf>)> {
    let Some(a) = bundle.index.agent_for(machine) else {
        bail!(
            "this host's machine is {machine} (`uname -m`), and this bundle carries agents for {} only: \
             build it with a drover that has an agent for {machine}, with this host's facts cached \
             (apply it once) or not known (then every agent is carried)",
            bundle.index.agent_machines()
        );
    };
    let path = layout.target(&format!("{AGENT_DIR}/agent-{}", a.hash.to_hex()));
    if path.is_file() && crate::fsops::hash_file(&path).is_ok_and(|(h, _)| h == a.hash) {
        return Ok((a, None));
    }
    if bundle.blob(&a.hash).is_none() {
        bail!(
            "the {} agent is not in this incremental bundle and not on this host: install its base bundle first",
            a.arch
        );
    }
    Ok((a, Some(path)))
}

/// Extract `agent` (checked against its blake3 from the signed index) to
/// `path`, through a temporary file in the same root-only directory.
pub fn put(layout: &Layout, bundle: &Bundle, agent: &AgentRef, path: &std::path::Path) -> Result<()> {
    let dir = layout.target(AGENT_DIR);
    for p in [layout.target("/var/lib/drover"), dir.clone()] {
        if p.is_symlink() {
            bail!("{} is a symbolic link: drover will not install its agent through it; remove it", p.display());
        }
    }
    crate::fsops::private_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).ctx(|| format!("chmod {}", dir.display()))?;
    let tmp = dir.join(format!(".new-{}.{}", agent.hash.to_hex(), std::process::id()));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
        let e = bundle.blob(&agent.hash).ok_or_else(|| crate::AgentError::new("the agent left the bundle".into()))?;
        bundle.extract(e, &mut f).map_err(|e| crate::AgentError::new(e.to_string()))?;
        f.flush().ctx(|| format!("write {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        fs::rename(&tmp, path).ctx(|| format!("rename to {}", path.display()))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    crate::fsops::sync_dir(&dir)
}
