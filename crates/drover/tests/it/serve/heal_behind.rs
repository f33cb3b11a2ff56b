//! Healing hosts behind the project: a host that missed a release while
//! unreachable is brought onto it (lab hosts), and a host an operator
//! rolled back is held there, saying so, until the next apply
//! (simulated hosts running the real agent code).

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{get_json, quick, rt, simulated, until, Browser, Server};
use crate::support::{drover_in, ok, wait_until, Fleet};

fn state_of(s: &serde_json::Value, host: &str) -> serde_json::Value {
    s["hosts"].as_array().unwrap().iter().find(|x| x["host"] == host).cloned().unwrap_or_default()
}

/// The soak's stale host: down during the apply of release 2, back
/// afterwards. Under `reconcile = "heal"` it is on release 2 like the
/// others (not `behind`, the same files) within two healing passes.
#[test]
fn heal_brings_a_host_that_missed_a_release_onto_it_within_two_passes() {
    let f = Fleet::new("sv-behind", 3);
    quick(&f, "\n[serve]\nreconcile = \"heal\"\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(f.lab(&["fault", "h3", "down"]).code, 0);
    std::fs::write(f.project().join("layers/site/etc/motd"), "release 2\n").unwrap();
    let r = f.apply_json(&[]);
    assert_ne!(r.code, 0, "h3 was down: {}", r.stdout);
    assert_eq!(f.lab(&["heal", "h3"]).code, 0);
    assert_ne!(std::fs::read_to_string(f.host_file(2, "/etc/motd")).unwrap(), "release 2\n", "h3 missed it");

    let store = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    let before = store.runs(1).unwrap()[0].id;
    let srv = Server::start(&f, &["--reconcile", "2s"]);
    let s = wait_until("every host converged", Duration::from_secs(90), || {
        let s = get_json(&srv.addr, "/api/status", &[]);
        (s["counts"]["converged"].as_u64() == Some(3)).then_some(s)
    });
    for h in ["h1", "h2", "h3"] {
        assert_eq!(state_of(&s, h)["state"], "converged", "{s:#}");
        assert!(state_of(&s, h).get("held").is_none(), "{s:#}");
    }
    for i in 0..3 {
        assert_eq!(std::fs::read_to_string(f.host_file(i, "/etc/motd")).unwrap(), "release 2\n", "host {i}");
    }
    let gens: Vec<serde_json::Value> =
        (1..=3).map(|i| state_of(&s, &format!("h{i}"))["status"]["generation"].clone()).collect();
    assert!(gens.iter().all(|g| g.is_u64()), "{gens:?}");
    // Healed by the first or second recorded pass of this server.
    let passes: Vec<i64> = {
        let mut v: Vec<i64> = store
            .runs(100)
            .unwrap()
            .into_iter()
            .filter(|r| r.id > before && r.command == "reconcile")
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    };
    let healed = store
        .history(Some("h3"), 20)
        .unwrap()
        .into_iter()
        .find(|r| r.run_id > before && r.outcome == drover_state::Outcome::Changed)
        .unwrap_or_else(|| panic!("a heal run changed h3: {passes:?}"));
    let nth = passes.iter().position(|&id| id == healed.run_id).expect("the heal is a reconcile run");
    assert!(nth < 2, "healed by pass {} of {passes:?}", nth + 1);
    // `drover status` agrees: nobody behind.
    let st = f.drover(&["status", "--json"]);
    assert!(!st.stdout.contains("\"behind\""), "{}", st.stdout);
}

/// A host rolled back on purpose is not rolled forward by healing: it
/// stays `behind` on its generation, held by the rollback run (in the API
/// and on its page), until the next apply takes it to the release.
#[test]
fn heal_leaves_a_rolled_back_host_held_and_says_so_until_the_next_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 2);
    let sim = hosts.to_str().unwrap();
    let toml = proj.join("drover.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{t}\n[serve]\nreconcile = \"heal\"\n")).unwrap();
    std::fs::write(proj.join("layers/site/etc/motd"), "release 2\n").unwrap();
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    ok(&drover_in(&proj, &["rollback", "--hosts", "s2", "--simulate", sim, "--sim-failure-rate", "0"]));
    let motd = hosts.join("s2/etc/motd");
    let rolled = std::fs::read_to_string(&motd).unwrap();
    assert_ne!(rolled, "release 2\n");
    let store = drover_state::Store::open(&proj.join(".drover/state.db")).unwrap();
    let rollback = store.runs(1).unwrap()[0].clone();
    assert_eq!(rollback.command, "rollback");

    let srv = Server::start_in(&proj, &["--simulate", sim, "--reconcile", "1s"]);
    // Three healing passes later it is still where the operator put it.
    let s = wait_until("three passes", Duration::from_secs(60), || {
        let s = get_json(&srv.addr, "/api/status", &[]);
        (s["pass"].as_u64().unwrap_or(0) >= 3).then_some(s)
    });
    let s2 = state_of(&s, "s2");
    assert_eq!(s2["state"], "behind", "{s:#}");
    let why = format!("held by rollback {}", rollback.id);
    assert_eq!(s2["held"], serde_json::json!({"by": "rollback", "run": rollback.id, "why": why}), "{s2:#}");
    assert_eq!(state_of(&s, "s1")["state"], "converged");
    assert!(state_of(&s, "s1").get("held").is_none());
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), rolled, "not rolled forward");
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/#/host/s2")).await.unwrap();
        let text = until("s2's page says why", Duration::from_secs(20), || async {
            b.c().find(Locator::Css("#state-why")).await.ok()?.text().await.ok()
        })
        .await;
        assert!(text.contains(&why), "{text}");
        b.close().await;
    });

    // The next apply ends the hold.
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    wait_until("s2 converged and not held", Duration::from_secs(30), || {
        let s2 = state_of(&get_json(&srv.addr, "/api/status", &[]), "s2");
        (s2["state"] == "converged" && s2.get("held").is_none()).then_some(())
    });
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "release 2\n");
}
