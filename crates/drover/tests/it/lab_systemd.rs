//! `drover lab up --init systemd`: real systemd as pid 1 of lab hosts,
//! driven through the `drover` binary, with the same guarantees as runit
//! hosts (faults, status, heal, a clean `down`). Needs root, like `lab.rs`.
//! Run: `sudo -E cargo test -p drover --test it -- lab_systemd::`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::lab::*;

/// `--init systemd`: systemd is pid 1 of every host, sshd is its
/// `ssh.service`, journald works, each host has its own machine id and its
/// own cgroup subtree; faults, status and heal work as for runit; the lab
/// keeps its init; `up` restarts a host whose systemd died; and `down`
/// leaves nothing, cgroups included, even after a host's systemd was killed
/// and the state file deleted.
#[test]
fn systemd_hosts_boot_systemd_with_sshd_as_a_unit_take_faults_restart_and_leave_nothing_behind() {
    let lab = TestLab::new("systemd");
    let summary = lab.ok(&["up", "2", "--init", "systemd"]);
    assert!(summary.contains("2 systemd hosts up"), "{summary}");
    let (key, hosts) = inventory(&lab);
    let known_hosts = lab.dir().join("test_known_hosts");
    let lines: String = hosts.values().map(|(a, k)| format!("{a} {k}\n")).collect();
    fs::write(&known_hosts, lines).unwrap();

    let mut machine_ids = Vec::new();
    for (name, (address, _)) in &hosts {
        let script = "cat /proc/1/comm; systemctl is-system-running; systemctl is-active ssh; \
                      ps -o comm= -p $(systemctl show --property=MainPID --value ssh); \
                      systemctl --failed --plain --no-legend | wc -l; \
                      journalctl -u ssh --no-pager | grep -c 'Server listening'; cat /etc/machine-id";
        let out = ssh_root(&known_hosts, &key, address, script);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let got: Vec<&str> = stdout.lines().collect();
        assert!(got.len() == 7, "{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(got[..5], ["systemd", "running", "active", "sshd", "0"], "{name}: {stdout}");
        assert_ne!(got[5], "0", "{name}: journald has no line from ssh.service");
        machine_ids.push(got[6].to_string());
        let cgroup = Path::new("/sys/fs/cgroup/systemd/drover-lab").join(&lab.name).join(name);
        if Path::new("/sys/fs/cgroup/systemd/drover-lab").exists() {
            assert!(cgroup.join("system.slice/ssh.service").is_dir(), "no delegated cgroup at {}", cgroup.display());
        }
    }
    assert_ne!(machine_ids[0], machine_ids[1], "hosts share a machine id");

    // The lab keeps its init.
    let out = lab.drover(&["up", "3", "--init", "runit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("runs systemd hosts") && err.contains("runit"), "{err}");

    // Faults: freeze stops systemd too, thaw resumes it; down and heal.
    let (h1, h2) = (&hosts["h1"].0, &hosts["h2"].0);
    lab.ok(&["fault", "h1", "freeze"]);
    lab.ok(&["fault", "h2", "down"]);
    assert!(banner(h1, Duration::from_secs(2)).is_err(), "a frozen host sent a banner");
    let status: serde_json::Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let states: Vec<&str> = status.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["frozen", "down"]);
    lab.ok(&["heal", "all"]);
    for h in [h1, h2] {
        banner(h, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{h} after heal: {e}"));
    }
    let out = ssh_root(&known_hosts, &key, h1, "systemctl is-system-running");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running", "systemd after thaw");

    // h2's systemd killed: the host is `stopped`, and `up` boots it again
    // (in the cgroup the dead one left).
    let h2_root = lab.dir().join("hosts/h2/merged");
    let kill_systemd = || {
        let systemd = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == h2_root)
                    && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd")
            })
            .expect("h2 runs systemd");
        Command::new("kill").args(["-9", &systemd.to_string()]).status().unwrap();
    };
    kill_systemd();
    let start = Instant::now();
    while !lab.ok(&["status"]).lines().any(|l| l.starts_with("h2 ") && l.contains("stopped")) {
        assert!(start.elapsed() < Duration::from_secs(5), "h2 not stopped: {}", lab.ok(&["status"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.ok(&["up", "2", "--init", "systemd"]).contains("(0 new)"));
    let out = ssh_root(&known_hosts, &key, h2, "systemctl is-system-running");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running", "systemd after a restart by up");

    // A crash: h2's systemd killed again, the state file gone. `down` still
    // finds and removes everything, the cgroups by the lab's name.
    kill_systemd();
    fs::remove_file(lab.dir().join("state.json")).unwrap();
    down_and_check_clean(&lab, &lab_index(h1), 2);
}
