//! A held session that dies (sshd killed and restarted on the host) is
//! replaced by a new login in the background; the command that finds it
//! dead goes direct, unaware.

use std::time::Duration;

use super::{enable, logins, vias, warm_up, Residents};
use crate::support::{wait_until, Fleet};

/// SIGKILL every sshd process of host `i` (the listener and its sessions;
/// runit starts a new listener). Returns how many.
fn kill_sshd(f: &Fleet, i: usize) -> usize {
    let out = std::process::Command::new("ip").args(["netns", "pids", &f.lab_hosts()[i].netns]).output().unwrap();
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let cmd =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).to_string();
        if cmd.starts_with("sshd") || cmd.starts_with("/usr/sbin/sshd") {
            let _ = std::process::Command::new("kill").args(["-9", pid]).status();
            killed += 1;
        }
    }
    killed
}

#[test]
fn a_held_session_killed_with_sshd_is_replaced_by_one_new_login_and_the_command_meanwhile_goes_direct() {
    let f = Fleet::new("persist-sshd", 1);
    let res = Residents::new();
    enable(&f, "1m");
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    let pid = res.pid();
    assert!(kill_sshd(&f, 0) >= 2, "the listener and the held session");
    let ip = f.lab_hosts()[0].address.to_string();
    wait_until("sshd back", Duration::from_secs(20), || crate::support::lab::banner(&ip, Duration::from_secs(1)).ok());
    let before = logins(&f)[0];
    // The held session is dead: this command goes direct, the same result.
    let r = res.drover(&f, &["apply", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["attempts"].as_u64()), (Some("unchanged"), Some(1)), "{h}");
    assert_eq!(vias(&r), ["direct"]);
    // ...while the resident logs in again, once, for the next ones.
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    assert_eq!(logins(&f)[0] - before, 2, "the direct command's login and the resident's");
    assert_eq!(res.pid(), pid, "the same resident");
}

/// A host that stops answering (frozen: TCP up, sshd silent) with a held
/// session costs the command that finds it at most one extra connect
/// timeout (the held session's), and the commands after it one timeout,
/// as without the resident: none waits on the resident's logins.
#[test]
fn a_frozen_host_costs_the_commands_after_it_one_connect_timeout_as_without_the_resident() {
    let f = Fleet::new("persist-frozen", 2);
    let res = Residents::new();
    enable(&f, "1m");
    let toml = f.project().join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replacen("[apply]\n", "[apply]\nconnect-timeout = \"2s\"\n", 1)).unwrap();
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    let frozen = f.lab(&["fault", "h2", "freeze"]);
    assert_eq!(frozen.code, 0, "{}", frozen.stderr);
    let run = || {
        let r = res.drover(&f, &["apply", "--json", "--retries", "0"]);
        assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
        let hosts = r.hosts();
        assert_eq!(hosts[0]["outcome"], "unchanged", "{}", hosts[0]);
        assert_eq!(hosts[0]["via"], "resident", "h1 still through its held session");
        assert_eq!(hosts[1]["outcome"], "unreachable", "{}", hosts[1]);
        hosts[1]["duration_ms"].as_u64().unwrap()
    };
    let first = run();
    assert!(first < 4000 + 2000, "at most the held session's timeout and the direct one: {first} ms");
    let next = run();
    assert!(next < 2000 + 1500, "one connect timeout, as direct: {next} ms");
    let thaw = f.lab(&["fault", "h2", "thaw"]);
    assert_eq!(thaw.code, 0, "{}", thaw.stderr);
}
