//! `drover bundle build`: compile the selected hosts offline and write one
//! bundle (`docs/bundle.md`).
//!
//! Plain blobs are shared: stored once, however many hosts use them. A file
//! that holds a secret (`Compiled::secrets`) is the exception: its content is
//! sealed to its host's pinned SSH ed25519 host key (`drover_bundle::seal`)
//! in memory and only the ciphertext is written, so the bundle file (and
//! nothing else the build writes: there are no temp files) never holds the
//! clear text. The clear content's hash is sealed too (the manifest shows the
//! ciphertext's), so the host verifies what it decrypts against what was
//! signed, and a leaked bundle does not even let one confirm a guess.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use drover_bundle::{seal, BlobInput, Bundle, BundleError, HostEntry, Index, SealedClear, SealedEntry, Writer};
use drover_proto::{EntryKind, Facts, Hash, Supervisor};
use drover_spec::{BlobSource, Compiled, Host, Project, SpecError};
use zeroize::Zeroize;

use crate::agent_bin::{self, Agent, Arch};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Boxed: a `SpecError` carries its source and diagnostics.
    #[error(transparent)]
    Spec(Box<SpecError>),
    #[error(
        "host {host}: {paths} hold secrets, and its pinned host keys include no ssh-ed25519 key to seal them to \
         (bundles encrypt each host's secrets to that key); pin it with `drover trust --hosts {host}` \
         (or set `host-key = \"ssh-ed25519 …\"` in the inventory), or leave the host out of the bundle"
    )]
    NoHostKey { host: String, paths: String },
    #[error("host {host}: no content for {path}")]
    NoContent { host: String, path: String },
    #[error("host {host}: read {path}: {err}")]
    Read { host: String, path: String, err: std::io::Error },
    #[error(
        "host {host} runs on {arch}, and this drover carries agents only for {carried}: build drover with the \
         agents for it (scripts/build-agents; see docs/architecture.md, \"Agents per machine\")"
    )]
    NoAgent { host: String, arch: Arch, carried: String },
}

impl From<SpecError> for BuildError {
    fn from(e: SpecError) -> Self {
        BuildError::Spec(Box::new(e))
    }
}

/// What to build.
pub struct BuildInput<'a> {
    pub project: &'a Project,
    pub hosts: &'a [Host],
    pub store: Option<&'a drover_state::Store>,
    pub base: Option<&'a Bundle>,
    pub supervisor: Supervisor,
    pub revision: String,
    pub output: &'a Path,
}

/// Facts for compiling `host` offline: cached from its last run when the
/// state store has them, else placeholders.
fn offline_facts(store: Option<&drover_state::Store>, host: &Host, sup: Supervisor) -> (Facts, &'static str) {
    let cached =
        store.and_then(|s| s.facts(&host.name).ok().flatten()).and_then(|j| serde_json::from_str::<Facts>(&j).ok());
    match cached {
        Some(f) if f.supervisor.is_some() => (f, "cache"),
        _ => (Facts { hostname: host.name.clone(), supervisor: Some(sup), ..Facts::default() }, "placeholder"),
    }
}

/// The agents a bundle carries: one per machine its hosts run on, by the
/// facts cached from their last run. When some host's machine is not known
/// (never reached from this controller: placeholder facts), every agent
/// this drover has, so the bundle installs on that host whatever it turns
/// out to be; those hosts are returned, for the build to say so. A known
/// machine this drover carries no agent for is refused: a missing agent
/// would fail on the host only at `drover-agent install` time. `hosts`:
/// each host's name and its facts' `arch` (empty: not known).
fn bundle_agents<'a>(
    hosts: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(Vec<&'static Agent>, Vec<String>), BuildError> {
    let (mut known, mut unknown) = (Vec::<&'static Agent>::new(), Vec::new());
    for (host, arch) in hosts {
        if arch.is_empty() {
            unknown.push(host.to_string());
            continue;
        }
        let arch = Arch::from_uname(arch);
        let agent = agent_bin::for_arch(&arch).ok_or_else(|| BuildError::NoAgent {
            host: host.to_string(),
            arch: arch.clone(),
            carried: agent_bin::arch_list(&agent_bin::carried()),
        })?;
        if !known.contains(&agent) {
            known.push(agent);
        }
    }
    if !unknown.is_empty() || known.is_empty() {
        return Ok((agent_bin::agents().iter().collect(), unknown));
    }
    known.sort_by_key(|a| a.arch.to_string());
    Ok((known, unknown))
}

/// A written bundle's index, and the hosts whose machine was not known
/// (so the bundle carries every agent this drover has).
pub struct Built {
    pub index: Index,
    pub unknown_machines: Vec<String>,
}

/// The generation templates show: one past the last one recorded for the
/// host, else 1 (the host assigns the real number; see `docs/bundle.md`).
fn offline_generation(store: Option<&drover_state::Store>, host: &str) -> u64 {
    let last = store
        .and_then(|s| s.history(Some(host), 50).ok())
        .and_then(|rows| rows.iter().filter_map(|r| r.generation).max())
        .and_then(|g| u64::try_from(g).ok());
    last.map_or(1, |g| g + 1)
}

/// Compile every host and write the bundle; the final index.
pub fn build(i: &BuildInput<'_>) -> Result<Built, BuildError> {
    let in_base = |h: &Hash| i.base.is_some_and(|b| b.blob(h).is_some());
    let mut w = Writer::create(i.output)?;
    let mut external = Vec::new();

    let facts: Vec<_> = i.hosts.iter().map(|h| offline_facts(i.store, h, i.supervisor)).collect();
    let (carried, unknown_machines) =
        bundle_agents(i.hosts.iter().zip(&facts).map(|(h, (f, _))| (h.name.as_str(), f.arch.as_str())))?;
    let mut agents = Vec::new();
    for a in carried {
        let hash = a.hash();
        if in_base(&hash) {
            external.push(hash);
        } else {
            w.add(hash, BlobInput::Bytes(a.bytes()))?;
        }
        let version = env!("CARGO_PKG_VERSION").into();
        agents.push(drover_bundle::AgentRef { arch: a.arch.to_string(), hash, version });
    }
    let mut entries = Vec::new();
    for (host, (facts, facts_from)) in i.hosts.iter().zip(facts) {
        let generation = offline_generation(i.store, &host.name);
        let mut c = i.project.compile(host, &facts, generation)?;
        let sealed = seal_secrets(&mut w, host, &mut c)?;
        // Files' contents (secret ones are sealed above) and the locked
        // packages' .deb files.
        let files = c.manifest.entries.iter().filter_map(|e| match e.kind {
            EntryKind::File { hash, .. } if !c.secrets.contains_key(&e.path) => Some((hash, e.path.as_str())),
            _ => None,
        });
        let debs = c.manifest.setup.packages.iter().map(|p| (p.hash, p.name.as_str()));
        for (hash, what) in files.chain(debs) {
            if in_base(&hash) {
                external.push(hash);
                continue;
            }
            if w.contains(&hash) {
                continue;
            }
            match c.blobs.get(&hash) {
                Some(BlobSource::File(p)) => w.add(hash, BlobInput::File(p))?,
                Some(BlobSource::Bytes(b)) => w.add(hash, BlobInput::Bytes(b))?,
                None => return Err(BuildError::NoContent { host: host.name.clone(), path: what.to_string() }),
            };
        }
        entries.push(HostEntry {
            name: host.name.clone(),
            address: host.address.clone(),
            port: host.port,
            user: host.user.clone(),
            key: host.auth.key.as_ref().map(|k| k.display().to_string()),
            host_keys: host.host_keys.clone(),
            roles: host.roles.clone(),
            groups: host.groups.clone(),
            generation,
            facts: facts_from.into(),
            manifest: c.manifest,
            recipient: sealed.recipient,
            sealed: sealed.entries,
            sealed_clear: sealed.clear,
        });
    }
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let p = i.project;
    let index = Index {
        created_ms: ms(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()),
        project: p.settings.name.clone(),
        revision: i.revision.clone(),
        base: i.base.map(|b| drover_bundle::BaseRef {
            revision: b.index.revision.clone(),
            index: b.index_hash(),
            created_ms: b.index.created_ms,
        }),
        agents,
        settings: drover_bundle::Settings {
            confirm_timeout_ms: ms(p.settings.confirm_timeout),
            parallel: p.settings.parallel as u64,
            connect_timeout_ms: ms(p.settings.connect_timeout),
        },
        hosts: entries,
        blobs: Vec::new(),
        external,
    };
    Ok(Built { index: w.finish(index)?, unknown_machines })
}

/// What a host entry says about its sealed files.
struct Sealed {
    recipient: Option<String>,
    entries: Vec<SealedEntry>,
    clear: Vec<u8>,
}

/// Seal each secret-bearing file of `host` to its ed25519 host key and add
/// the ciphertexts as blobs (one per distinct content of this host); in the
/// manifest, such a file's hash becomes its ciphertext's and its template
/// source is dropped, both sealed instead (`HostEntry::sealed_clear`). A
/// host with secrets and no such key is refused.
fn seal_secrets(w: &mut Writer, host: &Host, c: &mut Compiled) -> Result<Sealed, BuildError> {
    if c.secrets.is_empty() {
        return Ok(Sealed { recipient: None, entries: vec![], clear: vec![] });
    }
    let recipient = seal::recipient_of(&host.host_keys).ok_or_else(|| BuildError::NoHostKey {
        host: host.name.clone(),
        paths: c.secrets.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let mut done: HashMap<Hash, (Hash, u64)> = HashMap::new();
    let (mut entries, mut clear) = (Vec::new(), Vec::new());
    for e in &mut c.manifest.entries {
        let Some(names) = c.secrets.get(&e.path) else { continue };
        let EntryKind::File { hash, .. } = &mut e.kind else { continue };
        let (cipher, cipher_size) = match done.get(hash) {
            Some(v) => *v,
            None => {
                let mut plain = clear_content(host, &e.path, hash, c.blobs.get(hash))?;
                let sealed = seal::seal(&recipient, &plain);
                plain.zeroize();
                let ct = sealed?;
                let ch = Hash(*blake3::hash(&ct).as_bytes());
                w.add(ch, BlobInput::Bytes(&ct))?;
                done.insert(*hash, (ch, ct.len() as u64));
                (ch, ct.len() as u64)
            }
        };
        clear.push(SealedClear { path: e.path.clone(), hash: *hash, source: e.source.take() });
        *hash = cipher;
        entries.push(SealedEntry { path: e.path.clone(), names: names.clone(), cipher, cipher_size });
    }
    let clear = seal::seal_clear(&recipient, &clear)?;
    Ok(Sealed { recipient: Some(recipient), entries, clear })
}

/// A secret file's content, in memory (it is encrypted before anything is
/// written).
fn clear_content(host: &Host, path: &str, hash: &Hash, src: Option<&BlobSource>) -> Result<Vec<u8>, BuildError> {
    match src {
        None if *hash == Hash(*blake3::hash(b"").as_bytes()) => Ok(Vec::new()),
        Some(BlobSource::Bytes(b)) => Ok(b.to_vec()),
        Some(BlobSource::File(p)) => {
            let mut out = Vec::new();
            std::fs::File::open(p).and_then(|mut f| f.read_to_end(&mut out)).map_err(|err| BuildError::Read {
                host: host.name.clone(),
                path: p.display().to_string(),
                err,
            })?;
            Ok(out)
        }
        None => Err(BuildError::NoContent { host: host.name.clone(), path: path.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle carries one agent per machine its hosts run on, by their
    /// cached facts; if any host's machine is not known, every agent this
    /// drover has, naming those hosts; a machine without an agent is
    /// refused naming the host.
    #[test]
    fn a_bundle_carries_the_agent_of_each_machine_its_hosts_run_on() {
        let pick = |hosts: &[(&'static str, &'static str)]| bundle_agents(hosts.iter().copied());
        let all: Vec<&Agent> = agent_bin::agents().iter().collect();
        let x86 = agent_bin::for_arch(&Arch::X86_64).unwrap();
        assert_eq!(pick(&[]).unwrap(), (all.clone(), vec![]));
        assert_eq!(pick(&[("h1", "x86_64"), ("h2", "x86_64")]).unwrap(), (vec![x86], vec![]));
        let (agents, unknown) = pick(&[("h1", "x86_64"), ("h2", ""), ("h3", "")]).unwrap();
        assert_eq!((agents, unknown), (all.clone(), vec!["h2".to_string(), "h3".to_string()]));
        match agent_bin::for_arch(&Arch::Aarch64) {
            Some(arm) => {
                let (agents, unknown) = pick(&[("h1", "aarch64"), ("h2", "x86_64"), ("h3", "aarch64")]).unwrap();
                assert_eq!((agents, unknown), (vec![arm, x86], vec![]), "one per machine, sorted by name");
                assert_eq!(pick(&[("h1", "aarch64")]).unwrap(), (vec![arm], vec![]));
            }
            None => {
                let e = pick(&[("h1", "x86_64"), ("h2", "aarch64")]).unwrap_err();
                assert!(matches!(e, BuildError::NoAgent { ref host, arch: Arch::Aarch64, .. } if host == "h2"), "{e}");
            }
        }
        let e = pick(&[("h1", "riscv64")]).unwrap_err();
        assert!(e.to_string().starts_with("host h1 runs on riscv64, and this drover carries agents only for "), "{e}");
    }
}
