//! Where every service's instances run, and on which ports: computed once
//! per run (after the fact cache is set), before any host is compiled, so an
//! impossible placement stops the run before any host is contacted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::diag::SpecError;
use crate::fleet::natural_key;
use crate::instances::placement::{place, Refusal, Slot};
use crate::instances::ports::allocate;
use crate::instances::{Endpoints, Instance, Placement, Scale, Spread};
use crate::inventory::Host;

use super::service::Service;
use super::Project;

pub(super) struct Placed {
    pub(super) services: Endpoints,
    /// Per host, the instances of its instanced services (see
    /// `Service::instanced`), by service.
    pub(super) by_host: HashMap<String, BTreeMap<String, Vec<Instance>>>,
}

impl Project {
    /// Every service's instances with host, address and ports (`drover
    /// endpoints`, `fleet.services`), ordered by index.
    pub fn endpoints(&self) -> Result<&Endpoints, SpecError> {
        self.placed().map(|p| &p.services)
    }

    pub(super) fn placed(&self) -> Result<&Placed, SpecError> {
        self.placed.get_or_init(|| self.place_all()).as_ref().map_err(Clone::clone)
    }

    fn place_all(&self) -> Result<Placed, SpecError> {
        let mut order: Vec<&Host> = self.hosts.iter().collect();
        order.sort_by_cached_key(|h| natural_key(&h.name));
        let mut services = Endpoints::new();
        let mut by_host: HashMap<String, BTreeMap<String, Vec<Instance>>> = HashMap::new();
        let mut errors = Vec::new();
        for (name, svc) in &self.services {
            let runs: Vec<&Host> = order
                .iter()
                .filter(|h| h.roles.iter().any(|r| self.roles.get(r).is_some_and(|role| role.services.contains(name))))
                .copied()
                .collect();
            let list: Vec<(u32, &Host)> = match &svc.scale {
                Scale::Plain => runs.iter().map(|h| (0, *h)).collect(),
                Scale::Fixed(n) => (0..*n).flat_map(|i| runs.iter().map(move |h| (i, *h))).collect(),
                Scale::Placed(p) => match self.place_one(name, svc, p, &runs) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
            };
            let suffix = !matches!(svc.scale, Scale::Plain);
            let mut insts: Vec<Instance> = list
                .iter()
                .map(|(i, h)| Instance {
                    address: h.address.clone(),
                    host: h.name.clone(),
                    index: *i,
                    name: if suffix { format!("{name}-{i}") } else { name.clone() },
                    ports: BTreeMap::new(),
                    service: name.clone(),
                })
                .collect();
            if let Err(e) = assign_ports(name, svc, &mut insts) {
                errors.push(e);
                continue;
            }
            if svc.instanced {
                for inst in &insts {
                    by_host.entry(inst.host.clone()).or_default().entry(name.clone()).or_default().push(inst.clone());
                }
            }
            services.insert(name.clone(), insts);
        }
        if errors.is_empty() {
            errors.extend(port_clashes(&by_host, &self.services));
        }
        match SpecError::many(errors) {
            Some(e) => Err(e),
            None => Ok(Placed { services, by_host }),
        }
    }

    /// `[placement]`: the eligible hosts (role, `requires`), their spread
    /// values, the pinned hosts checked; then [`place`].
    fn place_one<'h>(
        &self,
        name: &str,
        svc: &Service,
        p: &Placement,
        runs: &[&'h Host],
    ) -> Result<Vec<(u32, &'h Host)>, SpecError> {
        let at = |span: &std::ops::Range<usize>, msg: String, label: &str, help: String| {
            SpecError::at(&svc.file, &svc.text, span.clone(), msg, label, help)
        };
        let mut slots = Vec::new();
        let mut unmet: BTreeMap<String, usize> = BTreeMap::new();
        let mut why_not: HashMap<&str, String> = HashMap::new();
        for h in runs {
            if let Some((req, _)) = &p.requires {
                if let Some(why) = req.unmet(self.fact_cache.get(&h.name)) {
                    *unmet.entry(why.clone()).or_default() += 1;
                    why_not.insert(&h.name, why);
                    continue;
                }
            }
            let spread = match &p.spread {
                None => None,
                Some((Spread::Var(v), span)) => match self.vars_for(h).get(v) {
                    Some(toml::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                    None => {
                        return Err(at(
                            span,
                            format!("spread = {v:?}: host {} (which runs {name}) has no var {v:?}", h.name),
                            "unknown var",
                            format!(
                                "give every host that runs {name} a `{v}` var (in the inventory, a group or a role), \
                                 or spread by group: spread = \"group:<prefix>\""
                            ),
                        ))
                    }
                },
                Some((Spread::Group(prefix), span)) => match h.groups.iter().find(|g| g.starts_with(prefix.as_str())) {
                    Some(g) => Some(g.clone()),
                    None => {
                        return Err(at(
                            span,
                            format!("spread = \"group:{prefix}\": host {} (which runs {name}) is in no group starting with {prefix:?}", h.name),
                            "unknown group",
                            format!("put every host that runs {name} in a group named {prefix}…, or spread by a host var"),
                        ))
                    }
                },
            };
            slots.push(Slot { host: h.name.clone(), spread });
        }
        for (ph, span) in &p.pinned {
            let Some(host) = self.hosts.iter().find(|h| h.name == *ph) else {
                return Err(at(
                    span,
                    format!("pinned host {ph} is not in the inventory"),
                    "unknown host",
                    "pin hosts by their inventory names".into(),
                ));
            };
            if !runs.iter().any(|h| h.name == *ph) {
                return Err(at(
                    span,
                    format!("pinned host {ph} has no role that runs {name} (its roles: {})", host.roles.join(", ")),
                    "lacks the role",
                    format!("give {ph} a role whose services include {name:?}, or pin another host"),
                ));
            }
            if let Some(why) = why_not.get(ph.as_str()) {
                return Err(at(
                    span,
                    format!("pinned host {ph} does not meet `requires`: its facts {why}"),
                    "here",
                    "pin a host that meets `requires`, or relax it".into(),
                ));
            }
        }
        let max = p.max_per_host.unwrap_or_else(|| p.count.max(1));
        let pinned: Vec<String> = p.pinned.iter().map(|(h, _)| h.clone()).collect();
        match place(name, p.count, max, &slots, &pinned) {
            Ok(hosts) => {
                let by_name: HashMap<&str, &'h Host> = runs.iter().map(|h| (h.name.as_str(), *h)).collect();
                Ok(hosts.iter().enumerate().map(|(i, h)| (i as u32, by_name[h.as_str()])).collect())
            }
            Err(Refusal::PinnedOver { host, pinned, max }) => {
                let span = p.pinned.iter().find(|(h, _)| *h == host).map(|(_, s)| s.clone()).unwrap_or(0..0);
                Err(at(
                    &span,
                    format!("{pinned} instances of {name} are pinned to {host}, but max-per-host is {max}"),
                    "here",
                    "pin each host at most max-per-host times, or raise max-per-host".into(),
                ))
            }
            Err(Refusal::Capacity { count, max, hosts }) => Err(SpecError::file(
                Path::new(&svc.file),
                shortfall(name, count, p.max_per_host.map(|_| max), hosts, &unmet),
                format!(
                    "add hosts with a role that runs {name}{}, or lower the count (`drover scale {name} N`){}",
                    if p.max_per_host.is_some() { ", raise max-per-host" } else { "" },
                    if unmet.contains_key("have no cached facts") {
                        "; `drover status` caches the facts of hosts never contacted"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
}

/// "30 node instances need 8 hosts with max-per-host 4; 6 match (2 lack cpus >= 2)".
fn shortfall(name: &str, count: u32, max: Option<u32>, hosts: usize, unmet: &BTreeMap<String, usize>) -> String {
    let need = count.div_ceil(max.unwrap_or(count.max(1)));
    let mut s = format!("{count} {name} instances need {need} host{}", if need == 1 { "" } else { "s" });
    if let Some(m) = max {
        s.push_str(&format!(" with max-per-host {m}"));
    }
    s.push_str(&format!("; {hosts} match"));
    if !unmet.is_empty() {
        let parts: Vec<String> = unmet.iter().map(|(why, n)| format!("{n} {why}")).collect();
        s.push_str(&format!(" ({})", parts.join(", ")));
    }
    s
}

/// Each instance's port per `[ports]` name (see `instances::ports`).
fn assign_ports(name: &str, svc: &Service, insts: &mut [Instance]) -> Result<(), SpecError> {
    let mut per_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (k, i) in insts.iter().enumerate() {
        per_host.entry(i.host.clone()).or_default().push(k);
    }
    for (pname, range) in &svc.ports {
        for (host, ks) in &per_host {
            let mut ks = ks.clone();
            ks.sort_by_key(|k| insts[*k].index);
            let indexes: Vec<u32> = ks.iter().map(|k| insts[*k].index).collect();
            let Some(ports) = allocate(*range, &indexes) else {
                return Err(SpecError::file(
                    Path::new(&svc.file),
                    format!(
                        "port range {pname} = \"{range}\" ({} port{}) is too small for the {} {name} instances on host {host}",
                        range.size(),
                        if range.size() == 1 { "" } else { "s" },
                        indexes.len()
                    ),
                    format!("widen [ports] {pname} to at least {} ports, or run fewer instances per host", indexes.len()),
                ));
            };
            for (k, port) in ks.iter().zip(ports) {
                insts[*k].ports.insert(pname.clone(), port);
            }
        }
    }
    Ok(())
}

/// Two instances on one host given the same port (overlapping ranges).
fn port_clashes(
    by_host: &HashMap<String, BTreeMap<String, Vec<Instance>>>,
    services: &BTreeMap<String, Service>,
) -> Option<SpecError> {
    let mut hosts: Vec<&String> = by_host.keys().collect();
    hosts.sort_by_cached_key(|h| natural_key(h));
    for host in hosts {
        let mut seen: HashMap<u16, (&str, &str)> = HashMap::new();
        for inst in by_host[host].values().flatten() {
            for (pname, port) in &inst.ports {
                if let Some((other, oname)) = seen.insert(*port, (&inst.name, pname)) {
                    let file = &services[&inst.service].file;
                    return Some(SpecError::file(
                        Path::new(file),
                        format!("host {host}: port {port} is given to both {other} ({oname}) and {} ({pname})", inst.name),
                        "make the [ports] ranges of services that share a host (and of one service's port names) disjoint",
                    ));
                }
            }
        }
    }
    None
}
