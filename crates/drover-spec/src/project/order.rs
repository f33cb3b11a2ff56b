//! Start order between services (`after = ["db"]`, compose's
//! `depends_on`): every name must be a service of the project, and the
//! order must have no cycle. Both are load errors at the `after` entry.

use std::collections::BTreeMap;

use drover_proto::ServiceSpec;

use super::service::Service;
use crate::diag::SpecError;

pub(super) fn check(services: &BTreeMap<String, Service>) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for (name, svc) in services {
        for (dep, span) in svc.after.iter().filter(|(d, _)| !services.contains_key(d)) {
            errors.push(SpecError::at(
                &svc.file,
                &svc.text,
                span.clone(),
                format!("service {name} starts after {dep:?}, which is not a service of the project"),
                "unknown service",
                format!(
                    "name a service listed by a role: {}",
                    services.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    // Depth-first; a service met again on the current path closes a cycle.
    let mut done = std::collections::BTreeSet::new();
    for start in services.keys() {
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        while let Some((name, i)) = path.last().copied() {
            let after = &services[name].after;
            if done.contains(name) || i >= after.len() {
                done.insert(name);
                path.pop();
                continue;
            }
            path.last_mut().expect("not empty").1 += 1;
            let dep = after[i].0.as_str();
            if let Some(at) = path.iter().position(|(n, _)| *n == dep) {
                let names: Vec<&str> = path[at..].iter().map(|(n, _)| *n).chain([dep]).collect();
                let svc = &services[name];
                return vec![SpecError::at(
                    &svc.file,
                    &svc.text,
                    after[i].1.clone(),
                    format!("start order has a cycle: {}", names.join(" → ")),
                    "closes the cycle",
                    "remove one of these `after` entries: services on one host start in an order with no cycle",
                )];
            }
            if !done.contains(dep) {
                path.push((dep, 0));
            }
        }
    }
    errors
}

impl super::Project {
    /// Fill each [`ServiceSpec::after`] of a host's manifest: the names, on
    /// this host, of the services (or their instances) it starts after.
    /// A service it comes after that does not run on this host is not
    /// waited for: across hosts, order is the rollout's (docs/containers.md).
    pub(super) fn start_order(&self, host: &str, services: &mut [ServiceSpec]) -> Result<(), SpecError> {
        if self.services.values().all(|s| s.after.is_empty()) {
            return Ok(());
        }
        let instances =
            if self.services.values().any(|s| s.instanced) { self.placed()?.by_host.get(host) } else { None };
        // Supervisor name → project service.
        let mut owner: BTreeMap<String, &str> = BTreeMap::new();
        for (name, svc) in &self.services {
            owner.insert(svc.unit.clone().unwrap_or_else(|| name.clone()), name);
        }
        for (name, list) in instances.into_iter().flatten() {
            for i in list {
                owner.insert(i.name.clone(), name);
            }
        }
        let present: Vec<(String, Option<&str>)> =
            services.iter().map(|s| (s.name.clone(), owner.get(&s.name).copied())).collect();
        for spec in services.iter_mut() {
            let Some(svc) = owner.get(&spec.name).and_then(|o| self.services.get(*o)) else { continue };
            spec.after = present
                .iter()
                .filter(|(_, o)| o.is_some_and(|o| svc.after.iter().any(|(d, _)| d == o)))
                .map(|(n, _)| n.clone())
                .collect();
        }
        Ok(())
    }
}

/// A runit service that starts after others waits, at the top of its `run`
/// script, while the agent holds it (`drover_proto::HOLD_DIR`): runsvdir
/// starts a new service directory on its own, before the agent could order
/// it. Other supervisors start a unit only when told to.
pub(super) fn hold_runit(files: &mut [crate::units::UnitFile], sup: drover_proto::Supervisor, name: &str, after: bool) {
    if !after || sup != drover_proto::Supervisor::Runit {
        return;
    }
    let run = format!("/etc/sv/{name}/run");
    for f in files.iter_mut().filter(|f| f.path == run) {
        if let Some(c) = &mut f.content {
            let wait = format!(
                "# Held by drover until the services it starts after are up (start order).\nwhile [ -e {}/{name} ]; do sleep 0.2; done\n",
                drover_proto::HOLD_DIR
            );
            // After the shebang and drover's header line.
            let at = c.match_indices('\n').nth(1).map_or(c.len(), |(i, _)| i + 1);
            c.insert_str(at, &wait);
        }
    }
}
