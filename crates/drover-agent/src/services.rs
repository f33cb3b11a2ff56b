//! Which services a change restarts, and driving the host's supervisor.
//!
//! A service restarts when any of its trigger paths changed (its unit files
//! are among its triggers); one whose only changed inputs are `reload-on`
//! paths is reloaded instead (nginx re-reads its config without dropping
//! connections); a new service starts; a dropped one stops. The
//! supervisor is told through its own command-line tool (`sv`, `systemctl`,
//! `rc-service`), with argv, never through a shell.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_proto::{Manifest, ServiceAction, ServiceRestart, ServiceSpec, Supervisor};

use crate::layout::Layout;
use crate::{bail, Result};

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

/// Run the supervisor command for each action of the given kinds.
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
    layout: &Layout,
    actions: &[ServiceRestart],
    kinds: &[ServiceAction],
    specs: &[&Manifest],
    changed: &BTreeSet<String>,
) -> Result<()> {
    if layout.simulated() {
        return Ok(());
    }
    let spec_of = |name: &str| specs.iter().flat_map(|m| m.services.iter()).find(|s| s.name == name);
    if needs_daemon_reload(kinds, specs, changed) {
        run(Command::new("systemctl").arg("daemon-reload"))?;
    }
    for a in actions.iter().filter(|a| kinds.contains(&a.action)) {
        let Some(spec) = spec_of(&a.name) else { continue };
        control(spec, a.action)?;
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

fn control(spec: &ServiceSpec, action: ServiceAction) -> Result<()> {
    let name = spec.name.as_str();
    match (spec.supervisor, action) {
        (Supervisor::Runit, ServiceAction::Start | ServiceAction::Restart) => {
            wait_for_runsv(name)?;
            let restart = action == ServiceAction::Restart;
            if crate::runit::has_check(name) {
                sv_retrying(&[if restart { "restart" } else { "up" }, name])
            } else {
                crate::runit::up(name, restart)
            }
        }
        // runit's `reload` sends SIGHUP, what daemons expect for "re-read config".
        (Supervisor::Runit, ServiceAction::Reload) => sv_retrying(&["reload", name]),
        (Supervisor::Systemd, ServiceAction::Reload) => run(Command::new("systemctl").args(["reload", name])),
        (Supervisor::OpenRc, ServiceAction::Reload) => run(Command::new("rc-service").args([name, "reload"])),
        (Supervisor::Runit, ServiceAction::Stop) => {
            // No runsv (a missing service directory, or one left with a
            // dead runsv's FIFO) means it is already stopped.
            if runsv_listening(&Path::new("/etc/service").join(name).join("supervise/ok")) {
                run(Command::new("sv").args(["-w", "10", "down", name]).env("SVDIR", "/etc/service"))?;
            }
            Ok(())
        }
        (Supervisor::Systemd, ServiceAction::Start) => run(Command::new("systemctl").args(["enable", "--now", name])),
        (Supervisor::Systemd, ServiceAction::Restart) => run(Command::new("systemctl").args(["restart", name])),
        (Supervisor::Systemd, ServiceAction::Stop) => run(Command::new("systemctl").args(["disable", "--now", name])),
        (Supervisor::OpenRc, ServiceAction::Start) => {
            run(Command::new("rc-update").args(["add", name, "default"]))?;
            run(Command::new("rc-service").args([name, "start"]))
        }
        (Supervisor::OpenRc, ServiceAction::Restart) => run(Command::new("rc-service").args([name, "restart"])),
        (Supervisor::OpenRc, ServiceAction::Stop) => {
            run(Command::new("rc-service").args([name, "stop"]))?;
            run(Command::new("rc-update").args(["del", name, "default"]))
        }
    }
}

/// runsvdir notices a new service directory within 5 s (it looks every 5 s:
/// this wait is most of a first deploy's time); `sv` fails until the
/// service's `runsv` listens on `supervise/ok`. Looking costs one `open`, so
/// look often.
fn wait_for_runsv(name: &str) -> Result<()> {
    let ok = Path::new("/etc/service").join(name).join("supervise/ok");
    let start = Instant::now();
    while !runsv_listening(&ok) {
        if start.elapsed() > Duration::from_secs(15) {
            bail!("service {name}: runsvdir did not pick up /etc/service/{name} within 15 s (is runsvdir running?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Whether a `runsv` supervises the service whose `supervise/ok` this is:
/// runsv holds that FIFO open for reading, so opening it for writing without
/// blocking succeeds, and fails (ENXIO) when nobody reads it. The FIFO's mere
/// existence says nothing: runit's `supervise/` stays in `/etc/sv/<name>`
/// after the service is removed (drover deletes only what it wrote), so a
/// service removed and added again (an instance scaled away and back) has
/// a stale FIFO until runsvdir starts its new runsv. This is `sv`'s own
/// check ("runsv not running").
fn runsv_listening(ok: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(ok).is_ok()
}

/// `supervise/ok` appears slightly before runsv accepts control commands;
/// retry `sv` briefly across that window.
fn sv_retrying(args: &[&str]) -> Result<()> {
    let mut last = Ok(());
    for _ in 0..20 {
        last = run(Command::new("sv").args(args).env("SVDIR", "/etc/service"));
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| crate::AgentError(format!("run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            format!("{} {}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim())
                .trim()
        );
    }
    Ok(())
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
    fn runsv_listens_only_while_someone_holds_its_ok_fifo_open() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        assert!(!runsv_listening(&ok), "no supervise/ok: no runsv");
        rustix::fs::mkfifoat(rustix::fs::CWD, &ok, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        assert!(!runsv_listening(&ok), "a FIFO left by a runsv that is gone");
        let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&ok).unwrap();
        assert!(runsv_listening(&ok), "runsv holds it open");
        drop(reader);
        assert!(!runsv_listening(&ok), "runsv ended");
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
