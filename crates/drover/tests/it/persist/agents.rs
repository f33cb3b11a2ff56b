//! The resident keeps one agent per host between commands (protocol 14's
//! `Detach`): a warm command starts no process on the host, and between
//! commands the kept agent holds no lock.

use std::fs;
use std::time::{Duration, Instant};

use super::{enable, vias, warm_up, Residents};
use crate::support::{copy_tree, Fleet, Run};

#[test]
fn warm_commands_reuse_the_hosts_agent_which_holds_no_lock_between_commands() {
    let f = Fleet::new("persist-agent", 1);
    let res = Residents::new();
    enable(&f, "1m");
    warm_up(|| res.drover(&f, &["apply", "--json"]));
    let kept = f.agent_pids(0);
    assert_eq!(kept.len(), 1, "one agent kept on the host between commands: {kept:?}");
    for args in [&["apply", "--json"][..], &["plan", "--json"], &["status", "--json"], &["apply", "--json"]] {
        let r = res.drover(&f, args);
        assert_eq!(r.code, 0, "{args:?}\n{}\n{}", r.stdout, r.stderr);
        if args[0] != "status" {
            assert_eq!(vias(&r), ["resident"], "{args:?}");
        }
        assert_eq!(f.agent_pids(0), kept, "{args:?} started an agent on the host");
    }

    // Another controller (a copy of the project, no resident) applies a
    // change directly while the resident holds its agent: the host lock is
    // free, so it neither waits (the agent's lock wait is 30 s) nor is busy.
    let other = tempfile::tempdir().unwrap();
    copy_tree(&f.project(), other.path());
    let toml = other.path().join("drover.toml");
    fs::write(&toml, fs::read_to_string(&toml).unwrap().replace("persist = \"1m\"", "persist = \"0\"")).unwrap();
    fs::write(other.path().join("layers/site/srv/site/index.html.j2"), "other {{ generation }}\n").unwrap();
    let start = Instant::now();
    let direct = Run::from(res.command(other.path(), &["apply", "--json"]).output().unwrap());
    assert_eq!(direct.code, 0, "{}\n{}", direct.stdout, direct.stderr);
    assert_eq!(vias(&direct), ["direct"]);
    assert_eq!(direct.hosts()[0]["outcome"].as_str(), Some("changed"), "{}", direct.stdout);
    assert!(start.elapsed() < Duration::from_secs(20), "waited for the lock: {:?}", start.elapsed());
    assert!(fs::read_to_string(f.host_file(0, "/srv/site/index.html")).unwrap().starts_with("other "));

    // The kept agent's next session sees that change (drift against this
    // project) and puts this project's content back, still the same process.
    assert_eq!(f.agent_pids(0).first(), kept.first(), "the kept agent is still there");
    let back = res.drover(&f, &["apply", "--json"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(vias(&back), ["resident"]);
    assert_eq!(back.hosts()[0]["outcome"].as_str(), Some("changed"), "{}", back.stdout);
    assert!(!fs::read_to_string(f.host_file(0, "/srv/site/index.html")).unwrap().starts_with("other "));
    let now = f.agent_pids(0);
    assert!(now.contains(&kept[0]), "the resident's agent was replaced: {kept:?} → {now:?}");
}
