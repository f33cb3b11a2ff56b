//! Runs whose desired state is not compiled from the project here: from a
//! signed bundle (`apply --bundle`), or compiled but shipped through peer
//! relays (`--relay`). Chooses the delivery strategy (`crate::host::
//! bundle_source`, `crate::host::relay`) and the hosts; the run itself is the
//! same as any other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use drover_bundle::{AgentRef, Bundle, HostEntry, PublicKey};
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

/// Write every agent `b` carries to `output.<machine>` (0755), and at
/// `output` a launcher for `/bin/sh` that runs the one for the host's
/// `uname -m`, refusing (naming the machine and the ones carried) when
/// there is none. Each agent is checked against its blake3 from the
/// verified index as it is extracted.
pub fn extract_agents<'a>(b: &'a Bundle, output: &Path) -> anyhow::Result<Vec<(&'a AgentRef, PathBuf)>> {
    use std::os::unix::fs::PermissionsExt;
    anyhow::ensure!(!b.index.agents.is_empty(), "this bundle carries no agent");
    let mut out = Vec::new();
    for a in &b.index.agents {
        let e = b.blob(&a.hash).with_context(|| format!("the {} agent is in this bundle's base, not in it", a.arch))?;
        let mut name = output.as_os_str().to_owned();
        name.push(format!(".{}", a.arch));
        let path = PathBuf::from(name);
        let mut f = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
        b.extract(e, &mut f)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        out.push((a, path));
    }
    std::fs::write(output, launcher(&b.index)).with_context(|| output.display().to_string())?;
    std::fs::set_permissions(output, std::fs::Permissions::from_mode(0o755))?;
    Ok(out)
}

/// The launcher `bundle agent` writes: `$0.<machine>` for the host's
/// `uname -m` (its other names mapped), else a refusal before anything
/// runs. Machine names are `[A-Za-z0-9_]` (the index is validated), so
/// they are safe in the script.
fn launcher(index: &drover_bundle::Index) -> String {
    let machines: Vec<&str> = index.agents.iter().map(|a| a.arch.as_str()).collect();
    format!(
        "#!/bin/sh\n\
         # Written by `drover bundle agent`: runs the agent beside this file built\n\
         # for this host's machine (`uname -m`): $0.<machine>.\n\
         m=$(uname -m 2>/dev/null)\n\
         case \"$m\" in arm64) m=aarch64 ;; amd64) m=x86_64 ;; esac\n\
         case \"$m\" in\n\
         {cases}) [ -x \"$0.$m\" ] && exec \"$0.$m\" \"$@\"\n\
         \x20 echo \"drover-agent: $0.$m is missing: copy it beside $0\" >&2; exit 1 ;;\n\
         esac\n\
         echo \"drover-agent: refused: this host's machine is ${{m:-unknown}} (uname -m), and this bundle carries agents for {list} only; nothing was changed on this host\" >&2\n\
         exit 1\n",
        cases = machines.join("|"),
        list = index.agent_machines(),
    )
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
        ssh: Default::default(),
        // A bundle's index records no jump hosts: applying a bundle to hosts
        // behind a bastion needs the project beside it.
        proxy_jump: Vec::new(),
        roles: e.roles.clone(),
        groups: e.groups.clone(),
        vars: Default::default(),
        origin: "bundle".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(arches: &[&str]) -> drover_bundle::Index {
        drover_bundle::Index {
            created_ms: 0,
            project: "p".into(),
            revision: "r".into(),
            base: None,
            agents: arches
                .iter()
                .map(|a| AgentRef { arch: a.to_string(), hash: drover_proto::Hash([0; 32]), version: "v".into() })
                .collect(),
            settings: drover_bundle::Settings { confirm_timeout_ms: 0, parallel: 1, connect_timeout_ms: 0 },
            hosts: vec![],
            blobs: vec![],
            external: vec![],
        }
    }

    /// The launcher runs `$0.<uname -m>` with its arguments; on a machine
    /// the bundle has no agent for it refuses, naming the machine and the
    /// ones carried, and runs nothing.
    #[test]
    fn the_launcher_runs_the_agent_for_this_machine_or_refuses_naming_both() {
        let here = String::from_utf8(std::process::Command::new("uname").arg("-m").output().unwrap().stdout).unwrap();
        let here = here.trim();
        let dir = tempfile::tempdir().unwrap();
        let launcher_at = |arches: &[&str]| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join("drover-agent");
            std::fs::write(&p, launcher(&index(arches))).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            for a in arches {
                let agent = dir.path().join(format!("drover-agent.{a}"));
                std::fs::write(&agent, format!("#!/bin/sh\necho \"agent {a}: $*\"\n")).unwrap();
                std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::process::Command::new(&p).args(["install", "x y"]).output().unwrap()
        };
        let ran = launcher_at(&["aarch64", "x86_64"]);
        assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
        assert_eq!(String::from_utf8_lossy(&ran.stdout), format!("agent {here}: install x y\n"));
        let other = if here == "x86_64" { "aarch64" } else { "x86_64" };
        std::fs::remove_file(dir.path().join(format!("drover-agent.{here}"))).unwrap();
        let refused = launcher_at(&[other]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(refused.stdout.is_empty(), "an agent ran");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains(&format!("this host's machine is {here} (uname -m), and this bundle carries agents for {other} only; nothing was changed")),
            "{err}"
        );
    }
}
