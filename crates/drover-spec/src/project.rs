//! Loading a project and compiling it per host.
//!
//! Variable precedence, lowest first (later wins per top-level key; tables
//! are replaced, not merged, as in Ansible's default):
//! 1. `drover.toml [vars]` (project)
//! 2. `inventory.toml [groups.<g>.vars]`, in the host's group order
//! 3. `roles/<r>.toml [vars]`, in the host's role order
//! 4. the host's own `vars`
//!
//! Layer precedence: a host's roles in order, each role's layers in order; a
//! later layer's file replaces an earlier one at the same target path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::{Entry, EntryKind, Facts, Hash, HealthCheck, HealthProbe, Manifest, ServiceSpec, Supervisor};
use globset::{Glob, GlobMatcher};
use toml::Spanned;

use crate::diag::SpecError;
use crate::duration::parse_duration;
use crate::files::{FileAttrs, ProjectFile, RoleFile, ServiceFile, Vars};
use crate::fleet::FleetCtx;
use crate::inventory::{self, Host};
use crate::layers::{self, LayerFile, LayerKind};
use crate::render::Templates;
use crate::units::{self, ServiceDef};

/// Project-wide settings from `drover.toml [apply]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// Unconfirmed generations revert after this (0 disables magic rollback).
    pub confirm_timeout: Duration,
    pub parallel: usize,
    pub connect_timeout: Duration,
}

pub struct Project {
    pub dir: PathBuf,
    pub settings: Settings,
    pub hosts: Vec<Host>,
    vars: Vars,
    groups: BTreeMap<String, Vars>,
    roles: BTreeMap<String, Role>,
    services: BTreeMap<String, Service>,
    layers: BTreeMap<String, Vec<LayerFile>>,
    templates: Templates,
    /// The project's default rollout policy, and each role's own.
    rollout: crate::RolloutPolicy,
    role_rollouts: BTreeMap<String, crate::RolloutPolicy>,
    /// Compile plans by (roles, supervisor), built on first use.
    plans: std::sync::Mutex<Vec<PlanKey>>,
    /// Facts each host last reported (see [`Project::set_fact_cache`]).
    fact_cache: HashMap<String, Facts>,
    /// The `fleet` template value, built on first use: once per run.
    fleet: std::sync::OnceLock<FleetCtx>,
    /// The project's encrypted secrets, decrypted on first use.
    secrets: drover_secrets::Store,
}

/// A cached plan and what it was built for: (roles, supervisor, plan).
type PlanKey = (Vec<String>, Option<Supervisor>, Arc<Plan>);

/// What every host with the same roles and supervisor gets (see
/// [`Project::compile`]): the sorted entries with attributes applied (each
/// template's with a placeholder hash), the blobs of the plain files, and the
/// services with their triggers.
struct Plan {
    entries: Vec<Entry>,
    blobs: HashMap<Hash, BlobSource>,
    /// (index in `entries`, template name), rendered per host.
    templates: Vec<(usize, String)>,
    /// Templates replaced by a later file at the same path: still rendered,
    /// so their errors stop the run as before.
    shadowed: Vec<String>,
    services: Vec<ServiceSpec>,
    /// (index in `entries`, encrypted layer file, its `layers/…` name),
    /// decrypted when a host is compiled.
    encrypted: Vec<(usize, PathBuf, String)>,
    /// Paths that hold a secret, and which (secret names, or the encrypted
    /// file's `layers/…` name).
    secret_paths: BTreeMap<String, Vec<String>>,
    /// The secrets the templates read (`*`: all of them).
    secret_names: BTreeSet<String>,
    /// A service the host cannot run: it has no supervisor.
    no_supervisor: Option<String>,
    /// Why the manifest is invalid, if it is: (file to blame, message, help).
    invalid: Option<(PathBuf, String, String)>,
}

struct Role {
    layers: Vec<String>,
    services: Vec<String>,
    vars: Vars,
    files: Vec<(GlobMatcher, FileAttrs, Option<u32>)>,
}

struct Service {
    command: Option<String>,
    unit: Option<String>,
    user: String,
    env: BTreeMap<String, String>,
    restart_on: Vec<GlobMatcher>,
    health: Option<HealthCheck>,
}

/// Where a blob's bytes come from when the controller sends it.
#[derive(Debug, Clone)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

pub struct Compiled {
    pub manifest: Manifest,
    pub blobs: HashMap<Hash, BlobSource>,
    /// Paths whose content holds a secret, with the secrets' names: shown as
    /// `<secret NAME changed>`, never diffed or printed.
    pub secrets: BTreeMap<String, Vec<String>>,
}

impl Project {
    /// Read and validate everything. All problems found are reported
    /// together; nothing is returned half-loaded.
    pub fn load(dir: &Path) -> Result<Project, SpecError> {
        let dir = dir.to_path_buf();
        let pf_path = dir.join("drover.toml");
        let pf_text = std::fs::read_to_string(&pf_path).map_err(|_| {
            SpecError::file(
                &pf_path,
                "not a drover project (no drover.toml)",
                "run `drover init DIR` to create one, or pass -C DIR",
            )
        })?;
        let pf: ProjectFile = toml::from_str(&pf_text).map_err(|e| SpecError::toml("drover.toml", &pf_text, &e))?;
        let settings = settings(&pf, &pf_text)?;
        let rollout = match &pf.rollout {
            Some(r) => crate::rollout::resolve(r, "drover.toml", &pf_text)?,
            None => crate::RolloutPolicy::default(),
        };
        let mut role_rollouts = BTreeMap::new();
        let secrets = drover_secrets::Store::new(&dir);
        let src = inventory::Sources {
            dir: &dir,
            project_defaults: &pf.defaults,
            project_name: "drover.toml",
            project_text: &pf_text,
            secrets: &secrets,
        };
        let (raw_hosts, groups) = inventory::load(&src)?;

        let mut errors = Vec::new();
        let mut role_files = BTreeMap::new();
        for h in &raw_hosts {
            if h.host.roles.is_empty() {
                errors.push(SpecError::file(
                    Path::new(&h.host.origin),
                    format!("host {} has no roles", h.host.name),
                    "give it roles = [\"…\"] in the inventory, or set [defaults] roles in drover.toml",
                ));
            }
            for (role, file, span) in &h.role_refs {
                if role_files.contains_key(role) {
                    continue;
                }
                match load_role(&dir, role) {
                    Ok(Some(r)) => {
                        role_files.insert(role.clone(), r);
                    }
                    Ok(None) => {
                        let (name, text) = file.split_once('\0').unwrap_or((&**file, ""));
                        let known = list_names(&dir.join("roles"));
                        errors.push(SpecError::at(
                            name,
                            text,
                            span.clone(),
                            format!("host {} uses role {role:?}, which does not exist", h.host.name),
                            "unknown role",
                            format!("create roles/{role}.toml, or use one of: {}", known.join(", ")),
                        ));
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if let Some(e) = SpecError::many(errors) {
            return Err(e);
        }

        let mut roles = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut layer_map = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, (rf, text)) in role_files {
            let fname = format!("roles/{name}.toml");
            for l in &rf.layers {
                if !layer_map.contains_key(l.get_ref()) {
                    match layers::scan(&dir, l.get_ref()) {
                        Ok(files) => {
                            layer_map.insert(l.get_ref().clone(), files);
                        }
                        // The layer exists but something in it cannot be
                        // deployed: that error, naming the file, is the one to show.
                        Err(e) if dir.join("layers").join(l.get_ref()).is_dir() => errors.push(e),
                        Err(_) => errors.push(SpecError::at(
                            &fname,
                            &text,
                            l.span(),
                            format!(
                                "role {name} uses layer {:?}, but layers/{}/ does not exist",
                                l.get_ref(),
                                l.get_ref()
                            ),
                            "unknown layer",
                            format!(
                                "create layers/{}/ or fix the name; existing: {}",
                                l.get_ref(),
                                list_names(&dir.join("layers")).join(", ")
                            ),
                        )),
                    }
                }
            }
            for s in &rf.services {
                if !services.contains_key(s.get_ref()) {
                    match load_service(&dir, s, &fname, &text) {
                        Ok(svc) => {
                            services.insert(s.get_ref().clone(), svc);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            if let Some(r) = &rf.rollout {
                match crate::rollout::resolve(r, &fname, &text) {
                    Ok(p) => {
                        role_rollouts.insert(name.clone(), p);
                    }
                    Err(e) => errors.push(e),
                }
            }
            match role_files_attrs(&rf, &fname, &text) {
                Ok(files) => {
                    roles.insert(
                        name,
                        Role {
                            layers: rf.layers.iter().map(|l| l.get_ref().clone()).collect(),
                            services: rf.services.iter().map(|s| s.get_ref().clone()).collect(),
                            vars: rf.vars,
                            files,
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(e) = SpecError::many(errors) {
            return Err(e);
        }
        let templates = Templates::load(layer_map.values().flatten())?;
        let template_names = layer_map.values().flatten().filter(|f| matches!(f.kind, LayerKind::Template));
        crate::secrets::check_defined(&templates, template_names.map(|f| &f.rel), &secrets)?;
        Ok(Project {
            dir,
            settings,
            hosts: raw_hosts.into_iter().map(|h| h.host).collect(),
            vars: pf.vars,
            groups,
            roles,
            services,
            layers: layer_map,
            templates,
            rollout,
            role_rollouts,
            plans: Default::default(),
            fact_cache: HashMap::new(),
            fleet: std::sync::OnceLock::new(),
            secrets,
        })
    }

    /// The facts other hosts' templates see for each host (`fleet.hosts[i].facts`):
    /// what each host last reported, by host name. Hosts absent here have
    /// none; a template reading one of their facts fails unless it gives a
    /// default. Set before compiling (the `fleet` value is built once, on
    /// the first compile, and never changes afterwards).
    pub fn set_fact_cache(&mut self, facts: HashMap<String, Facts>) {
        self.fact_cache = facts;
        self.fleet = std::sync::OnceLock::new();
    }

    /// The `fleet` value and its renderings (see the `fleet` module).
    fn fleet(&self) -> &FleetCtx {
        self.fleet.get_or_init(|| {
            let mut roles: BTreeSet<String> = self.roles.keys().cloned().collect();
            // Roles no host has yet are empty lists, not undefined: a
            // template looping over `fleet.roles.etcd` survives scaling to 0.
            if let Ok(rd) = std::fs::read_dir(self.dir.join("roles")) {
                for e in rd.flatten() {
                    if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")) {
                        roles.insert(n.to_string());
                    }
                }
            }
            let roles: Vec<String> = roles.into_iter().collect();
            let groups: Vec<String> = self.groups.keys().cloned().collect();
            FleetCtx::new(&self.hosts, |h| self.vars_for(h), &self.fact_cache, &roles, &groups)
        })
    }

    /// Render one template for a host: once per run for every host that
    /// reads the same values, if it reads `fleet` (see `Templates::memo_key`).
    fn render(&self, name: &str, ctx: &minijinja::Value, host: &Host) -> Result<crate::fleet::Rendered, SpecError> {
        match self.templates.memo_key(name, ctx) {
            Some(key) => self.fleet().render(key, || self.templates.render(name, ctx, &host.name)),
            None => Ok(crate::fleet::rendered(self.templates.render(name, ctx, &host.name)?)),
        }
    }

    /// The rollout policy for `role` (its own `[rollout]`, else the project's).
    pub fn rollout_policy(&self, role: Option<&str>) -> crate::RolloutPolicy {
        role.and_then(|r| self.role_rollouts.get(r)).unwrap_or(&self.rollout).clone()
    }

    /// Roles whose own `[rollout]` says `reboot = true`.
    pub fn reboot_roles(&self) -> Vec<String> {
        self.role_rollouts.iter().filter(|(_, p)| p.reboot).map(|(r, _)| r.clone()).collect()
    }

    pub fn has_rollout_policy(&self, role: &str) -> bool {
        self.role_rollouts.contains_key(role)
    }

    /// Merged variables for a host (see the module docs for precedence).
    pub fn vars_for(&self, host: &Host) -> Vars {
        let mut v = self.vars.clone();
        for g in &host.groups {
            if let Some(gv) = self.groups.get(g) {
                v.extend(gv.clone());
            }
        }
        for r in &host.roles {
            if let Some(role) = self.roles.get(r) {
                v.extend(role.vars.clone());
            }
        }
        v.extend(host.vars.clone());
        v
    }

    /// Compile one host's desired state. `generation` is the number this
    /// state will get on the host (templates may show it).
    ///
    /// Everything but the templates depends only on the host's roles and
    /// supervisor, so that part is a [`Plan`] built once per run and shared;
    /// a host costs a clone of it plus its template renderings.
    pub fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, SpecError> {
        let plan = self.plan(&host.roles, facts.supervisor);
        let vars = self.vars_for(host);
        let mut ctx = self.context(host, facts, generation, &vars);
        let mut secrets_ctx = None;
        if !plan.secret_names.is_empty() {
            let sv = crate::secrets::context(&self.secrets, &plan.secret_names)?;
            ctx = minijinja::context! { secrets => sv.clone(), ..ctx };
            secrets_ctx = Some(sv);
        }
        let mut ctx0 = None;
        let mut entries = plan.entries.clone();
        let mut blobs = plan.blobs.clone();
        for (i, name) in &plan.templates {
            let (bytes, hash) = self.render(name, &ctx, host)?;
            let e = &mut entries[*i];
            if self.templates.uses_generation(name) {
                let c0 = ctx0.get_or_insert_with(|| {
                    let c = self.context(host, facts, 0, &vars);
                    match &secrets_ctx {
                        Some(sv) => minijinja::context! { secrets => sv.clone(), ..c },
                        None => c,
                    }
                });
                e.source = Some(self.render(name, c0, host)?.1);
            }
            e.kind = EntryKind::File { size: bytes.len() as u64, hash };
            blobs.insert(hash, BlobSource::Bytes(bytes));
        }
        for name in &plan.shadowed {
            self.render(name, &ctx, host)?;
        }
        for (i, source, rel) in &plan.encrypted {
            let secret = crate::secrets::layer_file(&self.secrets, source, rel)?;
            let bytes = Arc::new(secret.expose().to_vec());
            let hash = Hash(*blake3::hash(&bytes).as_bytes());
            entries[*i].kind = EntryKind::File { size: bytes.len() as u64, hash };
            blobs.insert(hash, BlobSource::Bytes(bytes));
        }
        if let Some(name) = &plan.no_supervisor {
            return Err(SpecError::file(
                Path::new(&format!("services/{name}.toml")),
                format!("host {} has no supported supervisor (systemd, runit or OpenRC), so service {name} cannot run there", host.name),
                "install runit on the host, or remove the service from its roles",
            ));
        }
        if let Some((file, m, help)) = &plan.invalid {
            return Err(SpecError::file(file, format!("host {}: {m}", host.name), help.clone()));
        }
        Ok(Compiled {
            manifest: Manifest { entries, services: plan.services.clone() },
            blobs,
            secrets: plan.secret_paths.clone(),
        })
    }

    /// The plan for hosts with these roles and this supervisor (cached).
    fn plan(&self, roles: &[String], sup: Option<Supervisor>) -> Arc<Plan> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, p)) = plans.iter().find(|(r, s, _)| r.as_slice() == roles && *s == sup) {
            return p.clone();
        }
        let p = Arc::new(self.build_plan(roles, sup));
        plans.push((roles.to_vec(), sup, p.clone()));
        p
    }

    fn build_plan(&self, role_names: &[String], sup: Option<Supervisor>) -> Plan {
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
        let mut services = Vec::new();
        let mut no_supervisor = None;
        let names: BTreeSet<&String> = roles.iter().flat_map(|r| r.services.iter()).collect();
        for name in names {
            let svc = &self.services[name];
            let Some(sup) = sup else {
                no_supervisor = Some(name.clone());
                break;
            };
            let mut unit_paths = Vec::new();
            if let Some(cmd) = &svc.command {
                let def = ServiceDef { name, command: cmd, user: &svc.user, env: &svc.env };
                for u in units::files(sup, &def) {
                    unit_paths.push(u.path.clone());
                    let (kind, slot) = match (u.content, u.symlink) {
                        (Some(c), _) => {
                            let bytes = Arc::new(c.into_bytes());
                            let hash = Hash(*blake3::hash(&bytes).as_bytes());
                            (EntryKind::File { size: bytes.len() as u64, hash }, Slot::Blob(BlobSource::Bytes(bytes)))
                        }
                        (None, Some(t)) => (EntryKind::Symlink { target: t }, Slot::Nothing),
                        (None, None) => continue,
                    };
                    let e = Entry {
                        path: u.path,
                        kind,
                        mode: u.mode,
                        owner: "root".into(),
                        group: "root".into(),
                        source: None,
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
            let unit_name = svc.unit.clone().unwrap_or_else(|| name.clone());
            services.push(ServiceSpec { name: unit_name, supervisor: sup, triggers, health: svc.health.clone() });
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
        let manifest = Manifest { entries: list, services };
        let invalid = exposed.or_else(|| nested(&manifest, &origins)).or_else(|| {
            manifest
                .validate()
                .err()
                .map(|m| (self.dir.clone(), m, "fix the layer or service that produces this path".into()))
        });
        let Manifest { entries, services } = manifest;
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
            invalid,
        }
    }

    /// The template context. Built as minijinja values directly: this runs
    /// once per host per compile, so no detour through JSON.
    fn context(&self, host: &Host, facts: &Facts, generation: u64, vars: &Vars) -> minijinja::Value {
        use minijinja::{context, Value};
        // A var named `fleet` is shadowed (`vars.fleet` still reads it).
        let all = Value::from_serialize(vars);
        let mut top: BTreeMap<String, Value> =
            vars.keys().map(|k| (k.clone(), all.get_attr(k).unwrap_or_default())).collect();
        top.insert("vars".into(), all);
        top.insert(
            "host".into(),
            context! {
                name => host.name, address => host.address, port => host.port, user => host.user,
                roles => host.roles, groups => host.groups,
            },
        );
        top.insert("facts".into(), crate::fleet::facts_value(facts));
        top.insert("generation".into(), Value::from(generation));
        // Built only for projects whose templates read it (once per run).
        if self.templates.reads_fleet() {
            top.insert("fleet".into(), self.fleet().value.clone());
        }
        Value::from(top)
    }
}

fn settings(pf: &ProjectFile, text: &str) -> Result<Settings, SpecError> {
    let dur = |v: &Option<Spanned<String>>, default: Duration| -> Result<Duration, SpecError> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s.get_ref()).map_err(|m| {
                SpecError::at("drover.toml", text, s.span(), m, "here", "write a duration such as 500ms, 30s or 2m")
            }),
        }
    };
    Ok(Settings {
        name: pf.project.name.clone().unwrap_or_else(|| "drover".into()),
        confirm_timeout: dur(&pf.apply.confirm_timeout, Duration::from_secs(30))?,
        parallel: pf.apply.parallel.unwrap_or(512).max(1),
        connect_timeout: dur(&pf.apply.connect_timeout, Duration::from_secs(10))?,
    })
}

fn load_role(dir: &Path, name: &str) -> Result<Option<(RoleFile, String)>, SpecError> {
    let path = dir.join("roles").join(format!("{name}.toml"));
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let rf: RoleFile = toml::from_str(&text).map_err(|e| SpecError::toml(&format!("roles/{name}.toml"), &text, &e))?;
    Ok(Some((rf, text)))
}

fn role_files_attrs(
    rf: &RoleFile,
    fname: &str,
    text: &str,
) -> Result<Vec<(GlobMatcher, FileAttrs, Option<u32>)>, SpecError> {
    let mut out = Vec::new();
    for (glob, attrs) in &rf.files {
        let m = Glob::new(glob).map_err(|e| {
            SpecError::at(fname, text, attrs.span(), format!("bad glob {glob:?}: {e}"), "here", "fix the glob")
        })?;
        let mode = match &attrs.get_ref().mode {
            None => None,
            Some(s) => Some(
                u32::from_str_radix(s.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| {
                    SpecError::at(
                        fname,
                        text,
                        attrs.span(),
                        format!("mode {s:?} is not an octal permission"),
                        "here",
                        "write the mode as an octal string, e.g. \"0640\"",
                    )
                })?,
            ),
        };
        out.push((m.compile_matcher(), attrs.get_ref().clone(), mode));
    }
    Ok(out)
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

fn load_service(dir: &Path, name: &Spanned<String>, role_file: &str, role_text: &str) -> Result<Service, SpecError> {
    let n = name.get_ref();
    let fname = format!("services/{n}.toml");
    let path = dir.join(&fname);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Err(SpecError::at(
            role_file,
            role_text,
            name.span(),
            format!("service {n:?} is not defined"),
            "unknown service",
            format!(
                "create {fname} (with command = \"…\" or unit = \"…\"); existing: {}",
                list_names(&dir.join("services")).join(", ")
            ),
        ));
    };
    let sf: ServiceFile = toml::from_str(&text).map_err(|e| SpecError::toml(&fname, &text, &e))?;
    let whole = 0..text.len().min(1);
    if !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) || n.starts_with('.') {
        return Err(SpecError::file(
            &path,
            format!("service name {n:?} has characters a supervisor will not accept"),
            "use letters, digits, - _ . @",
        ));
    }
    if sf.command.is_some() == sf.unit.is_some() {
        return Err(SpecError::at(
            &fname,
            &text,
            whole,
            "a service needs exactly one of `command` or `unit`",
            "here",
            "command = \"…\" to have drover run it, unit = \"name\" to restart an existing unit",
        ));
    }
    let mut restart_on = Vec::new();
    for g in &sf.restart_on {
        let m = Glob::new(g.get_ref()).map_err(|e| {
            SpecError::at(
                &fname,
                &text,
                g.span(),
                format!("bad glob: {e}"),
                "here",
                "fix the glob, e.g. \"/etc/myapp/**\"",
            )
        })?;
        restart_on.push(m.compile_matcher());
    }
    let health = sf.health.as_ref().map(|h| health(h, &fname, &text)).transpose()?;
    Ok(Service {
        command: sf.command,
        unit: sf.unit,
        user: sf.user.unwrap_or_else(|| "root".into()),
        env: sf.env,
        restart_on,
        health,
    })
}

fn health(h: &Spanned<crate::files::HealthFile>, fname: &str, text: &str) -> Result<HealthCheck, SpecError> {
    let hf = h.get_ref();
    let probes = [hf.command.is_some(), hf.tcp.is_some(), hf.http.is_some()].iter().filter(|b| **b).count();
    if probes != 1 {
        return Err(SpecError::at(
            fname,
            text,
            h.span(),
            "a health check needs exactly one of command, tcp or http",
            "here",
            "e.g. http = \"http://127.0.0.1:8080/\"",
        ));
    }
    let probe = if let Some(c) = &hf.command {
        HealthProbe::Command(c.clone())
    } else if let Some(p) = hf.tcp {
        HealthProbe::Tcp { port: p }
    } else {
        let url = hf.http.clone().unwrap_or_default();
        if !url.starts_with("http://") {
            return Err(SpecError::at(
                fname,
                text,
                h.span(),
                format!("{url:?}: health URLs must be plain http://"),
                "here",
                "probe the service on the host itself, e.g. http://127.0.0.1:PORT/",
            ));
        }
        HealthProbe::Http { url }
    };
    let dur = |v: &Option<Spanned<String>>, d: u64| -> Result<u64, SpecError> {
        match v {
            None => Ok(d),
            Some(s) => parse_duration(s.get_ref())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|m| SpecError::at(fname, text, s.span(), m, "here", "write e.g. 500ms or 2s")),
        }
    };
    Ok(HealthCheck {
        probe,
        timeout_ms: dur(&hf.timeout, 2000)?,
        retries: hf.retries.unwrap_or(10),
        interval_ms: dur(&hf.interval, 500)?,
    })
}

fn list_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().trim_end_matches(".toml").to_string()).collect())
        .unwrap_or_default();
    v.sort();
    if v.is_empty() {
        v.push("(none)".into());
    }
    v
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
