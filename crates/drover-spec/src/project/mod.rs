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

mod hosts_file;
mod instance_units;
mod load;
mod order;
mod placed;
mod plan;
mod service;
mod unmatched;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::{EntryKind, Facts, Hash, Manifest, Supervisor};

use crate::container::Runtime;
use crate::diag::SpecError;
use crate::files::Vars;
use crate::fleet::FleetCtx;
use crate::inventory::Host;
use crate::layers::LayerFile;
use crate::render::Templates;

use plan::Plan;
use service::{Role, Service};

/// Project-wide settings from `drover.toml [apply]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// Unconfirmed generations revert after this (0 disables magic rollback).
    pub confirm_timeout: Duration,
    pub parallel: usize,
    pub connect_timeout: Duration,
    /// `[ssh] persist`: idle time after which the resident that holds
    /// this project's sessions exits; `None`: no resident (the default).
    pub persist: Option<Duration>,
    /// `[packages] sources`: `"apt"` or directories of `.deb` files, first wins.
    pub package_sources: Vec<String>,
    /// `[serve] reconcile` (see `drover serve --reconcile`).
    pub reconcile: crate::files::ReconcilePolicy,
    /// `[limits]`: what one template or layer file may take.
    pub limits: crate::Limits,
}

pub struct Project {
    pub dir: PathBuf,
    pub settings: Settings,
    pub hosts: Vec<Host>,
    /// `[[alert]]` rules (for `drover serve`).
    pub alerts: Vec<crate::AlertRule>,
    vars: Vars,
    groups: BTreeMap<String, Vars>,
    roles: BTreeMap<String, Role>,
    services: BTreeMap<String, Service>,
    layers: BTreeMap<String, Vec<LayerFile>>,
    templates: Templates,
    /// The project's default rollout policy, and each role's own.
    rollout: crate::RolloutPolicy,
    role_rollouts: BTreeMap<String, crate::RolloutPolicy>,
    /// Compile plans by (roles, supervisor, architecture), built on first use.
    plans: std::sync::Mutex<Vec<PlanKey>>,
    /// Facts each host last reported (see [`Project::set_fact_cache`]).
    fact_cache: HashMap<String, Facts>,
    /// The `fleet` template value, built on first use: once per run.
    fleet: std::sync::OnceLock<FleetCtx>,
    /// Instanced services' template strings (see `instance_units`).
    inline: minijinja::Environment<'static>,
    /// Where every service's instances run (and their ports): once per run.
    placed: std::sync::OnceLock<Result<placed::Placed, SpecError>>,
    /// The project's encrypted secrets, decrypted on first use.
    secrets: drover_secrets::Store,
    /// `packages.lock`, if there is one (see [`Project::set_package_lock`]).
    package_lock: Option<crate::lock::PackageLock>,
}

/// The Debian package of the OCI runtime that runs image services.
pub const RUNC: &str = "runc";

/// A cached plan and what it was built for: (roles, supervisor,
/// architecture, plan).
type PlanKey = (Vec<String>, Option<Supervisor>, String, Arc<Plan>);

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
    /// The facts other hosts' templates see for each host (`fleet.hosts[i].facts`):
    /// what each host last reported, by host name. Hosts absent here have
    /// none; a template reading one of their facts fails unless it gives a
    /// default. Set before compiling (the `fleet` value is built once, on
    /// the first compile, and never changes afterwards).
    pub fn set_fact_cache(&mut self, facts: HashMap<String, Facts>) {
        self.fact_cache = facts;
        self.fleet = std::sync::OnceLock::new();
        self.placed = std::sync::OnceLock::new();
    }

    /// Each role's `packages`, as written (roles without packages left out),
    /// plus `runc` for a role with a service run from an image by runc
    /// (not one run by docker or podman: drover does not install engines): the host's
    /// runtime travels in the package closure like any package, and is
    /// installed offline when the host lacks it (docs/containers.md).
    pub fn package_requests(&self) -> BTreeMap<String, Vec<String>> {
        self.roles
            .iter()
            .map(|(n, r)| {
                let mut p = r.setup.packages.clone();
                let images = r.services.iter().any(|s| {
                    self.services
                        .get(s)
                        .and_then(|s| s.container.as_ref())
                        .is_some_and(|c| c.runtime() == Runtime::Runc)
                });
                if images && !p.iter().any(|x| x == RUNC || x.starts_with("runc=")) {
                    p.push(RUNC.to_string());
                }
                (n.clone(), p)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }

    /// The image of service `name` (one container per architecture),
    /// `None` for a native service (or none).
    pub fn container(&self, name: &str) -> Option<&crate::container::Containers> {
        self.services.get(name).and_then(|s| s.container.as_ref())
    }

    pub fn package_lock(&self) -> Option<&crate::lock::PackageLock> {
        self.package_lock.as_ref()
    }

    /// Use this lock (after `drover packages lock` wrote it).
    pub fn set_package_lock(&mut self, lock: crate::lock::PackageLock) {
        self.package_lock = Some(lock);
    }

    /// The packages, users, groups and absent packages of a host with these
    /// roles on `facts`' OS and architecture, from the lock (see `crate::lock`).
    fn setup_for(
        &self,
        host: &Host,
        facts: &Facts,
        blobs: &mut HashMap<Hash, BlobSource>,
    ) -> Result<drover_proto::Setup, SpecError> {
        let mut setup = crate::setup::merge(host.roles.iter().filter_map(|r| self.roles.get(r)).map(|r| &r.setup));
        let requests = self.package_requests();
        if !host.roles.iter().any(|r| requests.contains_key(r)) {
            return Ok(setup);
        }
        let Some(lock) = &self.package_lock else {
            return Err(SpecError::file(
                &self.dir.join(crate::lock::LOCK_FILE),
                "the project has packages but no packages.lock",
                "run `drover packages lock` (plan and apply also write it when it is missing)",
            ));
        };
        // Placeholder facts (the preflight compile): check against the first target.
        let target = crate::lock::target_of(facts)
            .or_else(|| lock.targets.first().map(|t| t.target.clone()))
            .unwrap_or_default();
        setup.packages = lock.packages_for(&self.dir, &host.roles, &requests, &target, &host.name)?;
        for p in &setup.packages {
            let path = crate::lock::cache_path(&self.dir, &p.hash.to_hex());
            if !path.is_file() {
                return Err(SpecError::file(
                    &path,
                    format!("package {} {} is locked but not in the cache", p.name, p.version),
                    "plan and apply fetch the locked files again (exactly these versions and hashes); was the fetch refused?",
                ));
            }
            blobs.insert(p.hash, BlobSource::File(path));
        }
        Ok(setup)
    }

    /// The project's secrets (`drover render` redacts their values).
    pub fn secret_store(&self) -> &drover_secrets::Store {
        &self.secrets
    }

    /// The facts `host` last reported, from the fact cache.
    pub fn cached_facts(&self, host: &str) -> Option<&Facts> {
        self.fact_cache.get(host)
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
            // A placement error is reported by `compile` (which asks for it
            // first); `fleet.services` is then simply absent.
            // Built only when something may read it: a list of every
            // host's instances costs time on a 10,000-host fleet.
            let wanted = self.templates.reads_fleet_services() || self.services.values().any(|s| s.instanced);
            let services =
                wanted.then(|| self.placed().ok().map(|p| minijinja::Value::from_serialize(&p.services))).flatten();
            FleetCtx::new(&self.hosts, |h| self.vars_for(h), &self.fact_cache, &roles, &groups, services)
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
        // Only instanced services can fail to place (plain ones are one per
        // host, with no ports); for the others placement waits until asked.
        if self.services.values().any(|s| s.instanced) {
            self.placed()?;
        }
        let plan = self.plan(&host.roles, facts.supervisor, &facts.arch);
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
        let mut services = plan.services.clone();
        let setup = Box::new(self.setup_for(host, facts, &mut blobs)?);
        if !plan.instanced.is_empty()
            && self.instance_units(&plan, host, &ctx, &mut entries, &mut blobs, &mut services)?
        {
            self.start_order(&host.name, &mut services)?;
            let m = Manifest { entries, services, setup };
            if let Err(e) = m.validate() {
                return Err(SpecError::file(
                    &self.dir,
                    format!("host {}: {e}", host.name),
                    "a service instance's unit clashes with a layer file or another service: rename one",
                ));
            }
            return Ok(Compiled { manifest: m, blobs, secrets: plan.secret_paths.clone() });
        }
        self.start_order(&host.name, &mut services)?;
        Ok(Compiled { manifest: Manifest { entries, services, setup }, blobs, secrets: plan.secret_paths.clone() })
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
