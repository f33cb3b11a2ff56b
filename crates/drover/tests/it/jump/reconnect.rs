//! The bastion session is shared while it lives and replaced when it dies:
//! drover-ssh's pool, driven directly (one process, as `drover serve` is),
//! against a lab bastion whose session process is killed under it.

use std::time::Duration;

use drover_ssh::{Auth, Hop, Session, Target};

use super::logins;
use crate::support::{wait_until, Fleet};

fn target_behind(f: &Fleet, i: usize) -> Target {
    let inv: toml::Table =
        toml::from_str(&std::fs::read_to_string(f.project().join("inventory.toml")).unwrap()).unwrap();
    let key = inv["defaults"]["key"].as_str().unwrap().into();
    let (b, h) = (f.bastion(), &f.lab_hosts()[i]);
    Target {
        address: h.address.to_string(),
        port: 22,
        user: "root".into(),
        auth: Auth::Key { path: key, passphrase: None },
        host_keys: vec![h.host_key.clone()],
        timeouts: Default::default(),
        proxy_jump: vec![Hop {
            user: "root".into(),
            address: b.address.to_string(),
            port: 22,
            host_keys: vec![b.host_key.clone()],
        }],
    }
}

/// The bastion's per-connection sshd processes ("sshd: root@notty",
/// "sshd: root [priv]"), not its listener: killing them cuts every session.
fn cut_bastion_sessions(f: &Fleet) -> usize {
    let out = std::process::Command::new("ip").args(["netns", "pids", &f.bastion().netns]).output().unwrap();
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).starts_with("sshd: ") {
            let _ = std::process::Command::new("kill").args(["-9", pid]).status();
            killed += 1;
        }
    }
    killed
}

#[test]
fn the_bastion_session_is_shared_while_alive_and_replaced_when_it_dies() {
    let f = Fleet::behind_bastion("jump-re", 2);
    let b = f.bastion();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = |t: &Target| {
        rt.block_on(async {
            let s = Session::connect(t).await.expect("connect through the bastion");
            let out = s.run("hostname", b"").await.unwrap();
            s.close().await;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
    };
    let before = logins(b);
    assert_eq!(run(&target_behind(&f, 0)), "h1");
    assert_eq!(run(&target_behind(&f, 1)), "h2");
    assert_eq!(run(&target_behind(&f, 0)), "h1");
    assert_eq!(logins(b) - before, 1, "three sessions, two hosts, one bastion login");

    assert!(cut_bastion_sessions(&f) > 0, "the bastion had a session to cut");
    std::thread::sleep(Duration::from_millis(300));
    // The next connection notices the dead session (or fails once on it, as
    // a transient error the run would retry) and logs in again.
    let again = wait_until("a connection through a new bastion session", Duration::from_secs(20), || {
        rt.block_on(async {
            let s = Session::connect(&target_behind(&f, 1)).await.ok()?;
            let out = s.run("hostname", b"").await.ok()?;
            s.close().await;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
    });
    assert_eq!(again, "h2");
    assert_eq!(logins(b) - before, 2, "one new login replaced the dead session");
}
