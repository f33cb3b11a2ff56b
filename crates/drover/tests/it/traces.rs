//! A killed controller's traces (#26 item 4), on a lab fleet through the
//! real binary: its run is marked abandoned by the next run and still lists
//! the host it activated; the generation it left awaiting confirmation is
//! confirmed by an apply of the same project without shipping anything,
//! and an apply of another project is refused before shipping, naming the
//! agent's deadline; a rollback from a second state store between an
//! apply's activation and its confirmation is reported as what it was.

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{copy_tree, drover_in, noise, ok, Fleet, Run};

/// Runs' leases (`[state] lock-lease`) short enough that a killed
/// controller's run is known abandoned quickly (a PostgreSQL fleet has one).
fn short_lease(f: &Fleet) {
    let toml = f.project().join("drover.toml");
    let text = fs::read_to_string(&toml).unwrap();
    if !text.contains("lock-lease") {
        fs::write(&toml, format!("{text}\n[state]\nlock-lease = \"2s\"\n")).unwrap();
    }
}

/// Start `drover ARGS` (an apply) with host 0's agent holding the
/// controller's `Confirm` (the `before-confirm` test hook): returns once
/// the generation is activated and its confirmation is held.
fn hold_confirm(f: &Fleet, args: &[&str]) -> Child {
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    fs::write(&hook, "before-confirm").unwrap();
    let child = f.spawn_drover(args);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while fs::read_to_string(&reached).unwrap_or_default() != "before-confirm" {
        assert!(start.elapsed() < Duration::from_secs(90), "the controller never came to confirm");
        std::thread::sleep(Duration::from_millis(100));
    }
    fs::remove_file(&hook).unwrap();
    child
}

fn page(f: &Fleet, text: &str) {
    fs::write(f.project().join("layers/site/srv/site/index.html.j2"), text).unwrap();
}

#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn a_killed_controllers_run_is_abandoned_with_its_activated_host_and_its_pending_generation_is_confirmed_or_refused_without_shipping(
) {
    let f = Fleet::new("traces-kill", 1);
    short_lease(&f);
    f.apply_ok();
    page(&f, "release two\n");
    let mut killed = hold_confirm(&f, &["apply", "--json", "--confirm-timeout", "5m"]);
    killed.kill().unwrap(); // SIGKILL, past activation
    killed.wait().unwrap();
    assert!(f.kill_agent(0) >= 1, "the held confirmation's agent");
    let pending: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(f.host_file(0, "/var/lib/drover/pending.json")).unwrap()).unwrap();
    assert_eq!(pending["generation"], 2, "{pending}");
    let until = drover::human::utc(pending["deadline_ms"].as_u64().unwrap());
    std::thread::sleep(Duration::from_millis(2500)); // the killed run's lease runs out
                                                     // Its lease ran out: history says so even before the next run marks it.
    let hist = f.drover(&["history", "--json"]);
    ok(&hist);
    assert!(hist.stdout.contains("\"run_status\": \"abandoned\""), "{}", hist.stdout);

    // Another desired state (with 4 MiB to ship): refused before anything is
    // sent, naming the generation and the agent's deadline.
    fs::write(f.project().join("layers/site/srv/site/big.bin"), noise(4 << 20)).unwrap();
    page(&f, "release three\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    let err = h["error"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("waiting for confirmation of generation 2 until {until}")), "{h}");
    assert_eq!((h["bytes_sent"].as_u64(), h["phases"]["send_ms"].as_f64()), (Some(0), Some(0.0)), "{h}");

    // The killed run's own desired state: its generation is confirmed, and
    // nothing shipped.
    fs::remove_file(f.project().join("layers/site/srv/site/big.bin")).unwrap();
    page(&f, "release two\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("changed"), Some(2)), "{h}");
    assert_eq!((h["bytes_sent"].as_u64(), h["changes"].as_array().map(Vec::len)), (Some(0), Some(0)), "{h}");
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists(), "generation 2 must be confirmed");

    // The killed run: abandoned (not `running` forever), with the host it
    // activated, in `history --json` and the table.
    let hist = f.drover(&["history", "--json"]);
    ok(&hist);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&hist.stdout).unwrap();
    let abandoned: Vec<_> = rows.iter().filter(|r| r["run_status"] == "abandoned").collect();
    assert_eq!(abandoned.len(), 1, "{}", hist.stdout);
    let a = abandoned[0];
    assert_eq!(
        (a["host"].as_str(), a["outcome"].as_str(), a["generation"].as_u64(), a["command"].as_str()),
        (Some(f.lab_hosts()[0].name.as_str()), Some("activated"), Some(2), Some("apply")),
        "{a}"
    );
    let table = f.drover(&["history"]);
    ok(&table);
    assert!(table.stdout.contains("activated") && table.stdout.contains("run abandoned"), "{}", table.stdout);
}

#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn a_rollback_from_another_state_store_between_activation_and_confirmation_is_reported_as_the_replacement() {
    let f = Fleet::new("traces-race", 1);
    f.apply_ok();
    // A second controller: the same project and host keys, its own store.
    let other = tempfile::tempdir().unwrap();
    let proj_b = other.path().join("proj");
    copy_tree(&f.project(), &proj_b);
    for db in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = fs::remove_file(proj_b.join(".drover").join(db));
    }
    page(&f, "release two\n");
    let first = hold_confirm(&f, &["apply", "--json", "--confirm-timeout", "5m"]);
    let r = drover_in(&proj_b, &["rollback", "--json"]);
    ok(&r);
    assert_eq!(r.hosts()[0]["generation"], 1, "{}", r.stdout);
    fs::write(f.host_file(0, "/var/lib/drover/test-hook.continue"), "").unwrap();
    let r = Run::from(first.wait_with_output().unwrap());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    let err = h["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("generation 2 was replaced by generation 1 (rolled back by another controller)"),
        "the replacement must be named: {h}"
    );
    assert!(!err.contains("too late"), "{h}");
}
