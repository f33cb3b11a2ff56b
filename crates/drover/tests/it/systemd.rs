//! What only systemd hosts have: unit files that systemd caches (so a
//! removed unit needs `daemon-reload`) and a journal that `drover logs`
//! reads and follows. Real systemd as pid 1 of lab hosts (`--init systemd`),
//! the real agent, the real `drover` binary. The scenarios systemd shares
//! with runit (apply, health gate, rollback, drain, logs and following them)
//! are the `…_systemd` tests of `e2e.rs` and `day2.rs`.
//!
//! Needs root (the lab does); fails loudly otherwise.

use std::fs;

use crate::support::Fleet;
use drover_lab::Init;

/// Dropping `web` from the role stops and disables it, removes its unit
/// file, and reloads systemd *after* the file is gone, so systemd no longer
/// knows the unit; the host's later applies are no-ops.
#[test]
fn removing_a_service_stops_it_and_daemon_reload_forgets_its_unit_systemd() {
    let f = Fleet::on("sd-remove", 1, Init::Systemd);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(f.host_sh(0, "systemctl is-active web; systemctl is-enabled web"), "active\nenabled");
    assert!(f.host_file(0, "/etc/systemd/system/web.service").exists());

    let role = f.project().join("roles/site.toml");
    fs::write(&role, fs::read_to_string(&role).unwrap().replace("services = [\"web\"]", "services = []")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert!(!f.host_file(0, "/etc/systemd/system/web.service").exists(), "unit file left behind");
    assert!(f.service_pid(0, "web").is_empty(), "web still runs");
    // systemd re-read its units after the file was removed: the unit is
    // unknown to it, not a cached "loaded" copy of a deleted file.
    let out = f.host_sh(
        0,
        "systemctl show --property=LoadState --value web; \
         systemctl list-unit-files --no-legend web.service | wc -l; \
         date -d \"$(systemctl show --property=UnitsLoadTimestamp --value --timestamp=us+utc)\" +%s%6N; \
         stat -c %.6Y /etc/systemd/system | tr -d .",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["not-found", "0"], "{out}");
    let (reloaded_us, removed_us): (u64, u64) = (lines[2].parse().unwrap(), lines[3].parse().unwrap());
    assert!(
        reloaded_us >= removed_us,
        "last daemon-reload ({reloaded_us}) before the unit file was removed ({removed_us})"
    );
    let r = f.apply_json(&[]);
    assert_eq!(r.hosts()[0]["outcome"], "unchanged", "{}", r.stdout);
}

/// A generation that edits a unit (here its environment) restarts the
/// service on the new definition: systemd re-read the file first, so the
/// running process has the new environment and systemd does not flag the
/// unit as changed on disk.
#[test]
fn an_edited_unit_is_reloaded_before_its_service_restarts_systemd() {
    let f = Fleet::on("sd-edit", 1, Init::Systemd);
    let svc = f.project().join("services/web.toml");
    let text = fs::read_to_string(&svc).unwrap();
    let command = "command = \"echo flavour $FLAVOUR; exec busybox httpd -f -p 8080 -h /srv/site\"";
    let text = text.replace("command = \"busybox httpd -f -p 8080 -h /srv/site\"", command);
    fs::write(&svc, format!("{text}\n[env]\nFLAVOUR = \"one\"\n")).unwrap();
    assert_eq!(f.apply_json(&[]).code, 0);
    let pid = f.service_pid(0, "web");

    fs::write(&svc, format!("{text}\n[env]\nFLAVOUR = \"two\"\n")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["changes"][0]["path"], "/etc/systemd/system/web.service", "{h}");
    assert_eq!(h["restarts"], serde_json::json!(["web"]), "{h}");
    assert_ne!(f.service_pid(0, "web"), pid, "web was not restarted");
    let out = f.host_sh(
        0,
        "systemctl show --property=NeedDaemonReload --value web; \
         tr '\\0' '\\n' < /proc/$(systemctl show --property=MainPID --value web)/environ | grep ^FLAVOUR=",
    );
    assert_eq!(out, "no\nFLAVOUR=two", "the restart ran a stale unit");
    let logs = f.drover(&["logs", "web"]);
    assert!(logs.stdout.contains("flavour two"), "{}", logs.stdout);
}
