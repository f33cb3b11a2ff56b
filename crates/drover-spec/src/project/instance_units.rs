//! Per host: the supervisor units, triggers and health checks of the
//! instances placed on it.
//!
//! Why per host and not in the shared [`Plan`]: with placement, which
//! instances a host runs differs from host to host, and their command, env
//! and health strings are templates of the instance. Everything else stays
//! in the plan, so a fleet without instanced services compiles as fast as
//! before.

use crate::read::is_template;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use drover_proto::{Entry, Hash, HealthProbe, ServiceSpec};
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::diag::SpecError;
use crate::instances::Instance;
use crate::inventory::Host;
use crate::units::{self, ServiceDef};

use super::plan::{unit_entry, Plan};
use super::service::Service;
use super::{BlobSource, Project};

/// The template strings of instanced services' files (command, env values,
/// health), compiled once at load: a syntax error is found before any
/// compile, and a host's compile only renders. Rendered with the same
/// strictness as layer templates: an undefined variable is an error.
pub(super) fn inline_templates(services: &BTreeMap<String, Service>) -> Result<Environment<'static>, SpecError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for svc in services.values().filter(|s| s.instanced) {
        for (what, text) in strings(svc) {
            if is_template(&text) {
                env.add_template_owned(format!("{}#{what}", svc.file), text).map_err(|e| {
                    SpecError::file(Path::new(&svc.file), format!("{what}: {e}"), "fix the template syntax")
                })?;
            }
        }
    }
    Ok(env)
}

/// (name, text) of a service's strings that may be templates.
fn strings(svc: &Service) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = svc.command.iter().map(|c| ("command".to_string(), c.clone())).collect();
    // Each architecture's container has its own argv (the image's
    // entrypoint and command may differ).
    for (arch, c) in svc.container.iter().flat_map(|c| c.by_arch.iter()) {
        v.extend(c.process.args.iter().enumerate().map(|(i, a)| (arg_key(arch, i), a.clone())));
    }
    v.extend(svc.env.iter().map(|(k, t)| (format!("env.{k}"), t.clone())));
    match svc.health.as_ref().map(|h| &h.probe) {
        Some(HealthProbe::Command(c)) => v.push(("health.command".into(), c.clone())),
        Some(HealthProbe::Http { url }) => v.push(("health.http".into(), url.clone())),
        _ => {}
    }
    v.extend(svc.tcp_template.iter().map(|t| ("health.tcp".to_string(), t.clone())));
    v
}

/// The template name of argument `i` of an image service's container for
/// `arch` (`command.2`, `command.aarch64.2` when the image has several).
fn arg_key(arch: &str, i: usize) -> String {
    match arch {
        crate::container::ANY_ARCH => format!("command.{i}"),
        a => format!("command.{a}.{i}"),
    }
}

impl Project {
    /// Add the units of this host's instances to its manifest; true when
    /// any were added (the manifest must then be validated again).
    pub(super) fn instance_units(
        &self,
        plan: &Plan,
        host: &Host,
        ctx: &Value,
        entries: &mut Vec<Entry>,
        blobs: &mut HashMap<Hash, BlobSource>,
        services: &mut Vec<ServiceSpec>,
    ) -> Result<bool, SpecError> {
        let Some(sup) = plan.supervisor else { return Ok(false) };
        let Some(mine) = self.placed()?.by_host.get(&host.name) else { return Ok(false) };
        let mut added = false;
        for (name, base) in &plan.instanced {
            let (Some(list), Some(svc)) = (mine.get(name), self.services.get(name)) else { continue };
            if svc.command.is_none() && svc.container.is_none() {
                continue;
            }
            // This architecture's container (the plan is invalid without one).
            let container = match &svc.container {
                None => None,
                Some(c) => match c.key_for(&plan.arch) {
                    Some(k) => Some((k, &c.by_arch[k])),
                    None => continue,
                },
            };
            for inst in list {
                let ictx = minijinja::context! { instance => Value::from_serialize(inst), fleet => self.fleet().value.clone(), ..ctx.clone() };
                let r = |what: &str, text: &str| self.inline(svc, inst, what, text, &ictx);
                let command = svc.command.as_deref().map(|c| r("command", c)).transpose()?;
                let mut env = BTreeMap::new();
                for (k, v) in &svc.env {
                    env.insert(k.clone(), r(&format!("env.{k}"), v)?);
                }
                let health = match &svc.health {
                    None => None,
                    Some(h) => {
                        let mut h = h.clone();
                        match &mut h.probe {
                            HealthProbe::Tcp { .. } if svc.tcp_template.is_some() => {
                                let port = r("health.tcp", svc.tcp_template.as_deref().unwrap_or_default())?;
                                let port = port.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                                    SpecError::file(
                                        Path::new(&svc.file),
                                        format!("health.tcp: {port:?} is not a port (instance {} on host {})", inst.name, inst.host),
                                        "make the template render a port number, e.g. tcp = \"{{ instance.ports.p2p }}\"",
                                    )
                                })?;
                                h.probe = HealthProbe::Tcp { port };
                            }
                            HealthProbe::Command(c) => *c = r("health.command", c)?,
                            HealthProbe::Http { url } => *url = r("health.http", url)?,
                            HealthProbe::Tcp { .. } => {}
                        }
                        Some(super::plan::in_container(h, &inst.name, container.map(|(_, c)| c)))
                    }
                };
                let files = match (&command, container) {
                    (Some(command), _) => {
                        let def = ServiceDef {
                            name: &inst.name,
                            command,
                            user: &svc.user,
                            env: &env,
                            stop: None,
                            after: None,
                        };
                        units::files(sup, &def)
                    }
                    (None, Some((arch, c))) => {
                        let mut p = c.process.clone();
                        for (i, a) in p.args.iter_mut().enumerate() {
                            *a = r(&arg_key(arch, i), a)?;
                        }
                        p.env.extend(env.clone());
                        crate::container::units::files(sup, name, &inst.name, c, &p)
                    }
                    (None, None) => Vec::new(),
                };
                let mut files = files;
                super::order::hold_runit(&mut files, sup, &inst.name, !svc.after.is_empty());
                let mut triggers = base.clone();
                for u in files {
                    triggers.push(u.path.clone());
                    let Some((e, blob)) = unit_entry(u) else { continue };
                    match entries.binary_search_by(|x| x.path.as_str().cmp(&e.path)) {
                        Ok(_) => {
                            return Err(SpecError::file(
                                Path::new(&svc.file),
                                format!("host {}: {} (a unit file of instance {}) is also written by a layer or another service", host.name, e.path, inst.name),
                                "rename the service or the instance's clash, or remove the layer file",
                            ))
                        }
                        Err(pos) => entries.insert(pos, e),
                    }
                    if let Some((h, src)) = blob {
                        blobs.insert(h, src);
                    }
                }
                triggers.sort();
                triggers.dedup();
                // `reload-on` holds per instance as for a plain service: a
                // path that also restarts it is a restart trigger only.
                let reload_triggers: Vec<String> = entries
                    .iter()
                    .map(|e| &e.path)
                    .filter(|p| svc.reload_on.iter().any(|g| g.is_match(p.as_str())))
                    .filter(|p| triggers.binary_search(p).is_err())
                    .cloned()
                    .collect();
                services.push(ServiceSpec {
                    name: inst.name.clone(),
                    supervisor: sup,
                    triggers,
                    reload_triggers,
                    health,
                    after: Vec::new(),
                });
                added = true;
            }
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(added)
    }
}

impl Project {
    /// A command, env value or health string: a template of the instance
    /// when it contains `{{` or `{%`, as written otherwise.
    fn inline(&self, svc: &Service, inst: &Instance, what: &str, text: &str, ctx: &Value) -> Result<String, SpecError> {
        if !is_template(text) {
            return Ok(text.to_string());
        }
        let rendered = self.inline.get_template(&format!("{}#{what}", svc.file)).and_then(|t| t.render(ctx));
        rendered.map_err(|e| {
            let detail = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
            SpecError::file(
                Path::new(&svc.file),
                format!("{what}: {detail} (rendering instance {} for host {})", inst.name, inst.host),
                "fix the template; it sees instance.* (name, index, service, host, address, ports.*), host.*, vars.*, facts.*, fleet.*",
            )
        })
    }
}
