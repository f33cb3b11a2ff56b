//! Restarts that do not wait (#27 item 3), on runit lab hosts: a new
//! service starts when the apply asks for it, not on runsvdir's next 5-s
//! scan.
//!
//! The duration asserted is the `restart` phase of `apply --json`; the
//! bound sits between what the fixed behaviour takes and the wait the old
//! one could not avoid (explained at the test). Speed figures are
//! bench/restart.sh's. (runsv's one-second crash-loop sleep, which the
//! agent now waits out before a restart, is tested on its arithmetic in
//! `drover_agent::runit`: an apply's own restarts are a settle second
//! apart since the health gate waits for one, so no lab run reaches it.)
//!
//! Needs root (the lab does).

use std::fs;

use crate::support::Fleet;
use serde_json::Value;

fn restart_ms(h: &Value) -> f64 {
    h["phases"]["restart_ms"].as_f64().unwrap_or_else(|| panic!("no phases.restart_ms in {h}"))
}

/// The first apply starts `web` (runsvdir scans right then: woken by the
/// agent, or by chance); runsvdir looks again a second later (it does after
/// finding something new), then only every 5 s. The second apply, right
/// after, adds `extra` about 1–3 s into that 5-s wait, so a runsvdir left
/// to its scan starts `extra` 2.5–4 s later. Woken through its log pipe, it
/// starts it as soon as the clock leaves the second the service directory
/// changed in (under a second). And the service is up when the apply
/// returns: the apply waited for it, not a later scan.
#[test]
fn a_new_runit_service_starts_at_the_apply_not_at_runsvdirs_next_scan() {
    let f = Fleet::new("restart-new", 1);
    let first = f.apply_ok();
    assert_eq!(first[0]["outcome"], "changed", "{}", first[0]);

    fs::write(f.project().join("services/extra.toml"), "command = \"sleep 1000000\"\n").unwrap();
    let role = f.project().join("roles/site.toml");
    fs::write(
        &role,
        fs::read_to_string(&role).unwrap().replace("services = [\"web\"]", "services = [\"web\", \"extra\"]"),
    )
    .unwrap();
    let hosts = f.apply_ok();
    let h = &hosts[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert!(!f.service_pid(0, "extra").is_empty(), "extra runs when the apply returns: {h}");
    let ms = restart_ms(h);
    assert!(ms < 2500.0, "starting the new service took {ms} ms: it waited for runsvdir's scan: {h}");
}

/// systemd logs `Reloading.` for each reload of its configuration.
fn reloads(f: &Fleet) -> u32 {
    let n = f.host_sh(0, "journalctl --sync; journalctl _PID=1 -o cat --no-pager | grep -c '^Reloading' || true");
    n.parse().unwrap_or_else(|_| panic!("not a count: {n}"))
}

/// Adding a systemd service reloads systemd's configuration once (the
/// agent's `daemon-reload` for the new unit file), and so does removing
/// it: `systemctl enable`/`disable` are told `--no-reload`, where each
/// used to reload everything again (half a second of a lab host's start).
#[test]
fn a_systemd_service_is_added_and_removed_with_one_daemon_reload_each() {
    let f = Fleet::on("restart-reload", 1, drover_lab::Init::Systemd);
    assert_eq!(f.apply_json(&[]).code, 0);
    let role = f.project().join("roles/site.toml");
    let base = fs::read_to_string(&role).unwrap();
    fs::write(f.project().join("services/extra.toml"), "command = \"sleep 1000000\"\n").unwrap();

    let before = reloads(&f);
    fs::write(&role, base.replace("services = [\"web\"]", "services = [\"web\", \"extra\"]")).unwrap();
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert!(!f.service_pid(0, "extra").is_empty(), "extra runs: {h}");
    let added = reloads(&f);
    assert_eq!(added - before, 1, "adding a service reloaded systemd {} times", added - before);

    fs::write(&role, base).unwrap();
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert!(f.service_pid(0, "extra").is_empty(), "extra stopped: {h}");
    let removed = reloads(&f);
    assert_eq!(removed - added, 1, "removing a service reloaded systemd {} times", removed - added);
}
