//! What only systemd hosts have: unit files that systemd caches (so a
//! removed unit needs `daemon-reload`) and a journal that `drover logs`
//! reads and follows. Real systemd as pid 1 of lab hosts (`--init systemd`),
//! the real agent, the real `drover` binary. The scenarios systemd shares
//! with runit (apply, health gate, rollback, drain, logs and following them)
//! are the `…_systemd` tests of `e2e.rs` and `day2.rs`.
//!
//! Needs root (the lab does); fails loudly otherwise.

mod support;

use std::fs;

use drover_lab::Init;
use support::Fleet;

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
