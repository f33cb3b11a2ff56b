//! Which services a change restarts, and driving the host's supervisor.
//!
//! A service restarts when any of its trigger paths changed (its unit files
//! are among its triggers); one whose only changed inputs are `reload-on`
//! paths is reloaded instead (nginx re-reads its config without dropping
//! connections); a new service starts; a dropped one stops. The
//! supervisor that carries the actions out is the host environment's
//! ([`crate::supervisor`]).

use std::collections::BTreeSet;

use drover_proto::{Manifest, ServiceAction, ServiceRestart, ServiceSpec, Supervisor};

use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::Result;

pub fn plan(old: Option<&Manifest>, new: &Manifest, changed: &BTreeSet<String>) -> Vec<ServiceRestart> {
    let find = |m: Option<&Manifest>, name: &str| m.and_then(|m| m.services.iter().find(|s| s.name == name).cloned());
    let mut out = Vec::new();
    if let Some(old) = old {
        for s in &old.services {
            if find(Some(new), &s.name).is_none() {
                out.push(ServiceRestart { name: s.name.clone(), action: ServiceAction::Stop });
            }
        }
    }
    for s in &new.services {
        let action = match find(old, &s.name) {
            None => Some(ServiceAction::Start),
            Some(prev) => {
                let hit = |spec: &ServiceSpec| spec.triggers.iter().any(|t| changed.contains(t));
                let reload = |spec: &ServiceSpec| spec.reload_triggers.iter().any(|t| changed.contains(t));
                if hit(s) || hit(&prev) || prev.supervisor != s.supervisor {
                    Some(ServiceAction::Restart)
                } else if reload(s) {
                    Some(ServiceAction::Reload)
                } else {
                    None
                }
            }
        };
        if let Some(action) = action {
            out.push(ServiceRestart { name: s.name.clone(), action });
        }
    }
    out
}

/// Drive the host's supervisor (see [`crate::supervisor`]: real or fake,
/// as the host environment says) for each action of the given kinds.
///
/// systemd keeps its own copy of every unit file it has loaded: after a
/// transition changed anything under `/etc/systemd/` (a unit added, edited
/// or removed), `systemctl daemon-reload` runs once, before any service is
/// started or restarted, so systemd acts on the files now on disk and
/// forgets units whose files are gone. It runs even when nothing is started
/// (a generation that only removes a unit), which is why it keys on the
/// phase (`kinds` has Start or Restart: the phase after the swap) rather
/// than on the actions.
pub fn perform(
    env: HostEnv,
    layout: &Layout,
    actions: &[ServiceRestart],
    kinds: &[ServiceAction],
    specs: &[&Manifest],
    changed: &BTreeSet<String>,
) -> Result<()> {
    let spec_of = |name: &str| specs.iter().flat_map(|m| m.services.iter()).find(|s| s.name == name);
    if needs_daemon_reload(kinds, specs, changed) {
        env.supervisor(layout, Supervisor::Systemd).daemon_reload()?;
    }
    for a in actions.iter().filter(|a| kinds.contains(&a.action)) {
        let Some(spec) = spec_of(&a.name) else { continue };
        env.supervisor(layout, spec.supervisor).control(&spec.name, a.action)?;
    }
    Ok(())
}

/// See [`perform`]: after a swap that touched systemd's unit directory, on a
/// host where some service (kept, new or dropped) is systemd's.
fn needs_daemon_reload(kinds: &[ServiceAction], specs: &[&Manifest], changed: &BTreeSet<String>) -> bool {
    let after_swap = kinds.iter().any(|k| matches!(k, ServiceAction::Start | ServiceAction::Restart));
    let systemd = specs.iter().flat_map(|m| m.services.iter()).any(|s| s.supervisor == Supervisor::Systemd);
    after_swap && systemd && changed.iter().any(|p| p.starts_with("/etc/systemd/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, triggers: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            supervisor: Supervisor::Runit,
            triggers: triggers.iter().map(|s| s.to_string()).collect(),
            reload_triggers: vec![],
            health: None,
            after: vec![],
        }
    }

    #[test]
    fn daemon_reload_after_a_swap_that_touched_systemd_units_even_a_removal() {
        let mut web = svc("web", &["/etc/systemd/system/web.service"]);
        web.supervisor = Supervisor::Systemd;
        let old = Manifest { entries: vec![], services: vec![web], ..Default::default() };
        let new = Manifest::default(); // web (and its unit file) removed
        let removed: BTreeSet<String> = ["/etc/systemd/system/web.service".to_string()].into();
        let after = [ServiceAction::Start, ServiceAction::Restart];
        assert!(needs_daemon_reload(&after, &[&old, &new], &removed), "a removed unit must be reloaded away");
        assert!(!needs_daemon_reload(&[ServiceAction::Stop], &[&old, &new], &removed), "not before the swap");
        let motd: BTreeSet<String> = ["/etc/motd".to_string()].into();
        assert!(!needs_daemon_reload(&after, &[&old, &new], &motd), "no unit changed");
        let runit = Manifest { services: vec![svc("web", &[])], ..Default::default() };
        assert!(!needs_daemon_reload(&after, &[&runit], &removed), "no systemd service on this host");
    }

    #[test]
    fn only_services_whose_inputs_changed_restart() {
        let old = Manifest {
            services: vec![svc("db", &["/etc/db.conf"]), svc("web", &["/srv/www/index.html"])],
            ..Default::default()
        };
        let new =
            Manifest { services: vec![svc("cache", &[]), svc("web", &["/srv/www/index.html"])], ..Default::default() };
        let changed: BTreeSet<String> = ["/srv/www/index.html".to_string()].into();
        let p = plan(Some(&old), &new, &changed);
        let got: Vec<(&str, ServiceAction)> = p.iter().map(|r| (r.name.as_str(), r.action)).collect();
        assert_eq!(
            got,
            vec![("db", ServiceAction::Stop), ("cache", ServiceAction::Start), ("web", ServiceAction::Restart)]
        );
        let unrelated: BTreeSet<String> = ["/etc/motd".to_string()].into();
        assert!(plan(Some(&new), &new, &unrelated).is_empty());
    }

    #[test]
    fn reload_on_paths_reload_unless_a_restart_trigger_changed_too() {
        let mut web = svc("web", &["/etc/web/bin"]);
        web.reload_triggers = vec!["/etc/web/site.conf".into()];
        let m = Manifest { services: vec![web], ..Default::default() };
        let conf: BTreeSet<String> = ["/etc/web/site.conf".to_string()].into();
        assert_eq!(plan(Some(&m), &m, &conf)[0].action, ServiceAction::Reload);
        let both: BTreeSet<String> = ["/etc/web/site.conf".to_string(), "/etc/web/bin".to_string()].into();
        assert_eq!(plan(Some(&m), &m, &both)[0].action, ServiceAction::Restart);
        assert_eq!(plan(None, &m, &conf)[0].action, ServiceAction::Start, "a new service starts");
    }
}
