//! Start order within one apply (`ServiceSpec::after`, compose's
//! `depends_on`): the services an apply starts, restarts or reloads are
//! taken in an order where each comes after the ones it names, and a
//! service waits for those of them this apply acted on to pass their
//! health gate (or to run, without one) before it is started. Services the
//! apply left alone are already running and are not waited for.

use std::collections::BTreeSet;

use drover_proto::{Manifest, ServiceRestart};

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
        let mut m = Manifest::default();
        m.services = vec![
            spec("db", &[]),
            spec("web-0", &["db"]),
            spec("web-1", &["db"]),
            spec("worker", &["db", "web-0", "web-1"]),
        ];
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
}
