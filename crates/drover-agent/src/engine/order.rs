//! Start order within one apply (`ServiceSpec::after`, compose's
//! `depends_on`): the services an apply starts, restarts or reloads are
//! taken in an order where each comes after the ones it names, and a
//! service waits for those of them this apply acted on to pass their
//! health gate (or to run, without one) before it is started. Services the
//! apply left alone are already running and are not waited for.

use std::collections::BTreeSet;
use std::path::PathBuf;

use drover_proto::{Manifest, ServiceAction, ServiceRestart};

/// `restarts` reordered so that each comes after the ones its spec's
/// `after` names among them; otherwise as given (the controller's order).
/// The controller refuses cycles at load; one here (a hand-made manifest)
/// leaves the rest in the given order rather than looping.
pub(super) fn ordered<'a>(restarts: &[&'a ServiceRestart], m: &Manifest) -> Vec<&'a ServiceRestart> {
    let after = |name: &str| -> Vec<String> {
        m.services.iter().find(|s| s.name == name).map(|s| s.after.clone()).unwrap_or_default()
    };
    let names: BTreeSet<&str> = restarts.iter().map(|r| r.name.as_str()).collect();
    let mut left: Vec<&ServiceRestart> = restarts.to_vec();
    let mut out = Vec::with_capacity(left.len());
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while !left.is_empty() {
        let ready =
            left.iter().position(|r| after(&r.name).iter().all(|d| !names.contains(d.as_str()) || placed.contains(d)));
        let r = left.remove(ready.unwrap_or(0));
        placed.insert(r.name.clone());
        out.push(r);
    }
    out
}

/// The services `name` must wait for: those it comes after that this
/// apply started, restarted or reloaded.
pub(super) fn waits_for<'a>(name: &str, acted: &[&'a ServiceRestart], m: &Manifest) -> Vec<&'a str> {
    let Some(spec) = m.services.iter().find(|s| s.name == name) else { return Vec::new() };
    acted.iter().filter(|r| spec.after.contains(&r.name)).map(|r| r.name.as_str()).collect()
}

/// New services held back from starting by themselves until their turn
/// (`drover_proto::HOLD_DIR`: a runit `run` script waits while its file
/// exists). Made before the swap; each is released just before the agent
/// starts its service, and every one left is released when this is
/// dropped, whatever happened in between.
pub(super) struct Holds {
    dir: PathBuf,
    names: Vec<String>,
}

impl Holds {
    /// Hold every service this apply starts anew that comes after others.
    pub(super) fn new(layout: &crate::layout::Layout, restarts: &[ServiceRestart], m: &Manifest) -> Holds {
        let dir = layout.target(drover_proto::HOLD_DIR);
        let names: Vec<String> = restarts
            .iter()
            .filter(|r| r.action == ServiceAction::Start)
            .filter(|r| m.services.iter().any(|s| s.name == r.name && !s.after.is_empty()))
            .map(|r| r.name.clone())
            .collect();
        // Best effort: without the file a runit service may start early,
        // which is what it did before start order existed.
        if !names.is_empty() && std::fs::create_dir_all(&dir).is_ok() {
            for n in &names {
                let _ = std::fs::write(dir.join(n), b"");
            }
        }
        Holds { dir, names }
    }

    pub(super) fn release(&mut self, name: &str) {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            let _ = std::fs::remove_file(self.dir.join(&self.names[i]));
            self.names.remove(i);
        }
    }
}

impl Drop for Holds {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::fs::remove_file(self.dir.join(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::{ServiceAction, ServiceSpec, Supervisor};

    fn spec(name: &str, after: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            supervisor: Supervisor::Runit,
            triggers: vec![],
            reload_triggers: vec![],
            health: None,
            after: after.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn services_come_after_the_ones_they_name_and_otherwise_keep_their_order() {
        let mut m = Manifest {
            services: vec![
                spec("db", &[]),
                spec("web-0", &["db"]),
                spec("web-1", &["db"]),
                spec("worker", &["db", "web-0", "web-1"]),
            ],
            ..Manifest::default()
        };
        let r = |n: &str| ServiceRestart { name: n.into(), action: ServiceAction::Start };
        let given = [r("worker"), r("web-0"), r("web-1"), r("db"), r("x")];
        let refs: Vec<&ServiceRestart> = given.iter().collect();
        let got: Vec<&str> = ordered(&refs, &m).iter().map(|r| r.name.as_str()).collect();
        assert_eq!(got, ["db", "web-0", "web-1", "worker", "x"]);
        // Only what this apply acted on is waited for.
        let acted: Vec<&ServiceRestart> = given[1..3].iter().collect();
        assert_eq!(waits_for("worker", &acted, &m), ["web-0", "web-1"]);
        assert!(waits_for("db", &acted, &m).is_empty());
        // A cycle (never from the controller) does not loop.
        m.services = vec![spec("a", &["b"]), spec("b", &["a"])];
        let given = [r("a"), r("b")];
        let refs: Vec<&ServiceRestart> = given.iter().collect();
        assert_eq!(ordered(&refs, &m).len(), 2);
    }

    #[test]
    fn new_services_that_come_after_others_are_held_until_released_or_dropped() {
        let d = tempfile::tempdir().unwrap();
        let layout = crate::layout::Layout::new(d.path());
        let m = Manifest {
            services: vec![spec("db", &[]), spec("web", &["db"]), spec("worker", &["db"])],
            ..Manifest::default()
        };
        let r = |n: &str, action| ServiceRestart { name: n.into(), action };
        let restarts =
            [r("db", ServiceAction::Start), r("web", ServiceAction::Start), r("worker", ServiceAction::Restart)];
        let dir = d.path().join("run/drover/hold");
        let held = || {
            let mut v: Vec<String> =
                std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        let mut h = Holds::new(&layout, &restarts, &m);
        assert_eq!(held(), ["web"], "only a new service with `after` (a restart is the agent's to time)");
        h.release("web");
        assert!(held().is_empty());
        let h = Holds::new(&layout, &restarts, &m);
        assert_eq!(held(), ["web"]);
        drop(h);
        assert!(held().is_empty(), "dropping releases what is left");
    }
}
