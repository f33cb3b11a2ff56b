//! The part of a compile shared by every host with the same roles and
//! supervisor, built once per run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use drover_proto::{Entry, EntryKind, Hash, Manifest, ServiceSpec, Supervisor};

use crate::layers::LayerKind;
use crate::units::{self, ServiceDef};

use super::service::Role;
use super::{BlobSource, Project};

/// What every host with the same roles and supervisor gets (see
/// [`Project::compile`]): the sorted entries with attributes applied (each
/// template's with a placeholder hash), the blobs of the plain files, and the
/// services with their triggers.
pub(super) struct Plan {
    pub(super) entries: Vec<Entry>,
    pub(super) blobs: HashMap<Hash, BlobSource>,
    /// (index in `entries`, template name), rendered per host.
    pub(super) templates: Vec<(usize, String)>,
    /// Templates replaced by a later file at the same path: still rendered,
    /// so their errors stop the run as before.
    pub(super) shadowed: Vec<String>,
    pub(super) services: Vec<ServiceSpec>,
    /// (index in `entries`, encrypted layer file, its `layers/…` name),
    /// decrypted when a host is compiled.
    pub(super) encrypted: Vec<(usize, PathBuf, String)>,
    /// Paths that hold a secret, and which (secret names, or the encrypted
    /// file's `layers/…` name).
    pub(super) secret_paths: BTreeMap<String, Vec<String>>,
    /// The secrets the templates read (`*`: all of them).
    pub(super) secret_names: BTreeSet<String>,
    /// A service the host cannot run: it has no supervisor.
    pub(super) no_supervisor: Option<String>,
    pub(super) supervisor: Option<Supervisor>,
    /// The architecture it was built for (as hosts report it; empty: not
    /// known), which picks each image service's container.
    pub(super) arch: String,
    /// Services compiled per host and instance (`Service::instanced`), with
    /// the paths their `restart-on` globs match here: every instance
    /// restarts on those, and on its own unit files.
    pub(super) instanced: Vec<(String, Vec<String>)>,
    /// Why the manifest is invalid, if it is: (file to blame, message, help).
    pub(super) invalid: Option<(PathBuf, String, String)>,
}

impl Project {
    /// The plan for hosts with these roles, this supervisor and this
    /// architecture (cached).
    pub(super) fn plan(&self, roles: &[String], sup: Option<Supervisor>, arch: &str) -> Arc<Plan> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.iter().find(|p| p.0.as_slice() == roles && p.1 == sup && p.2 == arch).map(|p| &p.3) {
            return p.clone();
        }
        let p = Arc::new(self.build_plan(roles, sup, arch));
        plans.push((roles.to_vec(), sup, arch.to_string(), p.clone()));
        p
    }

    fn build_plan(&self, role_names: &[String], sup: Option<Supervisor>, arch: &str) -> Plan {
        enum Slot {
            Blob(BlobSource),
            Template(String),
            Encrypted(PathBuf, String),
            Nothing,
        }
        /// A later file at the same path replaces an earlier one.
        fn insert(entries: &mut BTreeMap<String, (Entry, Slot)>, e: Entry, slot: Slot, shadowed: &mut Vec<String>) {
            if let Some((_, Slot::Template(t))) = entries.insert(e.path.clone(), (e, slot)) {
                shadowed.push(t);
            }
        }
        let mut entries: BTreeMap<String, (Entry, Slot)> = BTreeMap::new();
        let mut origins: HashMap<String, PathBuf> = HashMap::new();
        let mut shadowed = Vec::new();
        let mut secret_paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut world_readable_ok: BTreeSet<String> = BTreeSet::new();
        let roles: Vec<&Role> = role_names.iter().filter_map(|r| self.roles.get(r)).collect();
        for role in &roles {
            for layer in &role.layers {
                for f in self.layers.get(layer).into_iter().flatten() {
                    let (kind, slot) = match &f.kind {
                        LayerKind::Plain { hash, size } => (
                            EntryKind::File { size: *size, hash: *hash },
                            Slot::Blob(BlobSource::File(f.source.clone())),
                        ),
                        LayerKind::Symlink(t) => (EntryKind::Symlink { target: t.clone() }, Slot::Nothing),
                        LayerKind::Dir => (EntryKind::Dir, Slot::Nothing),
                        // Filled in per host.
                        LayerKind::Template => {
                            (EntryKind::File { size: 0, hash: Hash([0; 32]) }, Slot::Template(f.rel.clone()))
                        }
                        LayerKind::Encrypted => (
                            EntryKind::File { size: 0, hash: Hash([0; 32]) },
                            Slot::Encrypted(f.source.clone(), f.rel.clone()),
                        ),
                    };
                    let holds: Option<Vec<String>> = match &f.kind {
                        LayerKind::Encrypted => Some(vec![f.rel.clone()]),
                        LayerKind::Template => self.templates.secret_refs(&f.rel).map(|r| r.iter().cloned().collect()),
                        _ => None,
                    };
                    let mut e = Entry {
                        path: f.target.clone(),
                        kind,
                        // A secret's file is 0600 unless the role says otherwise.
                        mode: if holds.is_some() { crate::secrets::SECRET_MODE } else { f.mode },
                        owner: "root".into(),
                        group: "root".into(),
                        source: None,
                    };
                    if apply_attrs(&roles, &mut e) {
                        world_readable_ok.insert(e.path.clone());
                    }
                    secret_paths.remove(&e.path);
                    if let Some(h) = holds {
                        secret_paths.insert(e.path.clone(), h);
                    }
                    origins.insert(e.path.clone(), self.dir.join(&f.rel));
                    insert(&mut entries, e, slot, &mut shadowed);
                }
            }
        }
        // Roles' `[dirs]`: managed directories with their owner and mode. A
        // layer's directory at the same path takes these attributes; a
        // layer's file or symlink there is a conflict.
        let mut dir_conflict = None;
        for role in &roles {
            for (path, owner, group, mode) in &role.setup.dirs {
                if let Some((e, _)) = entries.get(path) {
                    if !matches!(e.kind, EntryKind::Dir) {
                        dir_conflict.get_or_insert_with(|| {
                            let from = origins.get(path).map_or_else(String::new, |o| o.display().to_string());
                            (
                                origins.get(path).cloned().unwrap_or_default(),
                                format!("{path} is a directory in a role's [dirs] but a file or symlink in {from}"),
                                "remove one of the two".to_string(),
                            )
                        });
                        continue;
                    }
                }
                let e = Entry {
                    path: path.clone(),
                    kind: EntryKind::Dir,
                    mode: *mode,
                    owner: owner.clone(),
                    group: group.clone(),
                    source: None,
                };
                insert(&mut entries, e, Slot::Nothing, &mut shadowed);
            }
        }
        let mut services = Vec::new();
        let mut instanced = Vec::new();
        let mut no_supervisor = None;
        let mut no_image = None;
        let names: BTreeSet<&String> = roles.iter().flat_map(|r| r.services.iter()).collect();
        for name in names {
            let svc = &self.services[name];
            let Some(sup) = sup else {
                no_supervisor = Some(name.clone());
                break;
            };
            // This architecture's container (`crate::container::arches`).
            let container = match svc.container.as_ref().map(|c| c.for_arch(arch)).transpose() {
                Ok(c) => c,
                Err(no) => {
                    let file = self.dir.join(format!("services/{name}.toml"));
                    no_image.get_or_insert((file, no.message, no.help));
                    continue;
                }
            };
            // An image's rootfs is shared by the service's instances, and
            // restarts every one of them when it changes.
            let mut unit_paths = Vec::new();
            if container.is_some() {
                // Its /etc/hosts: a bind mount keeps the file it was made
                // with, so a change restarts the container.
                unit_paths.push(crate::container::hosts::HOSTS_FILE.to_string());
                if !entries.contains_key(crate::container::CONTAINERS) {
                    let e = crate::container::rootfs::containers_dir();
                    insert(&mut entries, e, Slot::Nothing, &mut shadowed);
                }
                if !entries.contains_key(crate::container::hosts::HOSTS_FILE) {
                    let (e, src) = self.container_hosts();
                    insert(&mut entries, e, Slot::Blob(src), &mut shadowed);
                }
            }
            for (e, blob) in container.iter().flat_map(|c| crate::container::rootfs::entries(name, c)) {
                unit_paths.push(e.path.clone());
                origins.insert(e.path.clone(), self.dir.join(format!("services/{name}.toml")));
                insert(&mut entries, e, blob.map_or(Slot::Nothing, |(_, src)| Slot::Blob(src)), &mut shadowed);
            }
            if svc.instanced {
                let mut triggers: Vec<String> =
                    entries.keys().filter(|p| svc.restart_on.iter().any(|g| g.is_match(p.as_str()))).cloned().collect();
                triggers.extend(unit_paths);
                instanced.push((name.clone(), triggers));
                continue;
            }
            let files = match (&svc.command, container) {
                (Some(cmd), _) => units::files(
                    sup,
                    &ServiceDef { name, command: cmd, user: &svc.user, env: &svc.env, stop: None, after: None },
                ),
                (None, Some(c)) => crate::container::units::files(sup, name, name, c, &c.process),
                (None, None) => Vec::new(),
            };
            let mut files = files;
            super::order::hold_runit(&mut files, sup, name, !svc.after.is_empty());
            {
                for u in files {
                    unit_paths.push(u.path.clone());
                    let Some((e, blob)) = unit_entry(u) else { continue };
                    let slot = match blob {
                        Some((_, src)) => Slot::Blob(src),
                        None => Slot::Nothing,
                    };
                    origins.insert(e.path.clone(), self.dir.join(format!("services/{name}.toml")));
                    secret_paths.remove(&e.path);
                    insert(&mut entries, e, slot, &mut shadowed);
                }
            }
            let mut triggers: Vec<String> =
                entries.keys().filter(|p| svc.restart_on.iter().any(|g| g.is_match(p.as_str()))).cloned().collect();
            triggers.extend(unit_paths);
            triggers.sort();
            triggers.dedup();
            let reload_triggers: Vec<String> = entries
                .keys()
                .filter(|p| svc.reload_on.iter().any(|g| g.is_match(p.as_str())))
                .filter(|p| triggers.binary_search(p).is_err())
                .cloned()
                .collect();
            let unit_name = svc.unit.clone().unwrap_or_else(|| name.clone());
            services.push(ServiceSpec {
                name: unit_name,
                supervisor: sup,
                triggers,
                reload_triggers,
                health: svc.health.clone().map(|h| in_container(h, name, container)),
                after: Vec::new(),
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let mut blobs = HashMap::new();
        let mut templates = Vec::new();
        let mut encrypted = Vec::new();
        let mut exposed = None;
        let mut list = Vec::with_capacity(entries.len());
        for (_, (e, slot)) in entries {
            match (slot, &e.kind) {
                (Slot::Blob(src), EntryKind::File { hash, .. }) => {
                    blobs.insert(*hash, src);
                }
                (Slot::Template(t), _) => templates.push((list.len(), t)),
                (Slot::Encrypted(src, rel), _) => encrypted.push((list.len(), src, rel)),
                _ => {}
            }
            if secret_paths.contains_key(&e.path) && exposed.is_none() {
                exposed = crate::secrets::world_readable(&e.path, e.mode, world_readable_ok.contains(&e.path)).map(|m| {
                    let file = origins.get(&e.path).cloned().unwrap_or_default();
                    (file, m, "leave the mode to drover (0600), or set a mode without read for others in the role's [files]".to_string())
                });
            }
            list.push(e);
        }
        // Paths, modes, owners and service names do not depend on the host:
        // validate once.
        let manifest = Manifest { entries: list, services, setup: Default::default() };
        let invalid = no_image.or(exposed).or(dir_conflict).or_else(|| nested(&manifest, &origins)).or_else(|| {
            manifest
                .validate()
                .err()
                .map(|m| (self.dir.clone(), m, "fix the layer or service that produces this path".into()))
        });
        let Manifest { entries, services, .. } = manifest;
        let secret_names = templates
            .iter()
            .map(|(_, t)| t)
            .chain(&shadowed)
            .filter_map(|t| self.templates.secret_refs(t))
            .flatten()
            .cloned()
            .collect();
        Plan {
            entries,
            blobs,
            templates,
            shadowed,
            encrypted,
            secret_paths,
            secret_names,
            services,
            no_supervisor,
            supervisor: sup,
            arch: arch.to_string(),
            instanced,
            invalid,
        }
    }
}

/// An image service's health `command` runs inside its container
/// (`runc exec`); other probes reach it over the host's network as they are.
pub(super) fn in_container(
    mut h: drover_proto::HealthCheck,
    name: &str,
    container: Option<&crate::container::Container>,
) -> drover_proto::HealthCheck {
    if let (Some(c), drover_proto::HealthProbe::Command(cmd)) = (container, &mut h.probe) {
        if let Some(inside) = crate::container::engine::health_command(name, cmd, c, &c.process) {
            *cmd = inside;
        }
    }
    h
}

/// A unit file as a manifest entry, with its blob (files only).
pub(super) fn unit_entry(u: units::UnitFile) -> Option<(Entry, Option<(Hash, BlobSource)>)> {
    let (kind, blob) = match (u.content, u.symlink) {
        (Some(c), _) => {
            let bytes = Arc::new(c.into_bytes());
            let hash = Hash(*blake3::hash(&bytes).as_bytes());
            (EntryKind::File { size: bytes.len() as u64, hash }, Some((hash, BlobSource::Bytes(bytes))))
        }
        (None, Some(t)) => (EntryKind::Symlink { target: t }, None),
        (None, None) => return None,
    };
    let e = Entry { path: u.path, kind, mode: u.mode, owner: "root".into(), group: "root".into(), source: None };
    Some((e, blob))
}

/// Apply the roles' `[files]` attributes; true when one allows the file to
/// be world-readable even if it holds a secret.
fn apply_attrs(roles: &[&Role], e: &mut Entry) -> bool {
    let mut allow = false;
    for role in roles {
        for (m, a, mode) in &role.files {
            if m.is_match(&e.path) {
                if let Some(o) = &a.owner {
                    e.owner = o.clone();
                }
                if let Some(g) = &a.group {
                    e.group = g.clone();
                }
                if let Some(md) = mode {
                    e.mode = *md;
                }
                if let Some(a) = a.allow_world_readable {
                    allow = a;
                }
            }
        }
    }
    allow
}

/// An entry beneath a file or symlink of the same manifest (from two layers,
/// or a layer and a service's unit files), blamed on the deeper entry's file.
fn nested(m: &Manifest, origins: &HashMap<String, PathBuf>) -> Option<(PathBuf, String, String)> {
    let mut leaves: Vec<&Entry> = Vec::new();
    for e in &m.entries {
        let p = e.path.as_str();
        if let Some(leaf) =
            leaves.iter().find(|l| p.starts_with(l.path.as_str()) && p.as_bytes().get(l.path.len()) == Some(&b'/'))
        {
            let what = if matches!(leaf.kind, EntryKind::Symlink { .. }) { "a symlink" } else { "a file" };
            let other = origins.get(&leaf.path).map_or_else(|| leaf.path.clone(), |o| o.display().to_string());
            return Some((
                origins.get(p).cloned().unwrap_or_default(),
                format!("{p} would lie beneath {}, which is {what} from {other}; drover never writes through a symlink or into a file", leaf.path),
                "remove one of the two, or make the parent a directory in every layer".into(),
            ));
        }
        if !matches!(e.kind, EntryKind::Dir) {
            leaves.retain(|l| p.starts_with(l.path.as_str()));
            leaves.push(e);
        }
    }
    None
}
