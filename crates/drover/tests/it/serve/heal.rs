//! Healing: drift re-applied, hosts another run holds left alone, and a
//! locked state store that never stalls the server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::support::serve::{get_json, http, parse_prometheus, quick, rt, until, Browser, Server};
use crate::support::Fleet;

#[test]
fn heal_policy_reapplies_a_drifted_file_and_its_cell_returns_to_converged() {
    let f = Fleet::new("sv-heal", 2);
    quick(&f, "\n[serve]\nreconcile = \"heal\"\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let motd = f.host_file(1, "/etc/motd");
    let want = std::fs::read_to_string(&motd).unwrap();
    let srv = Server::start(&f, &["--reconcile", "2s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        until("h2 converged", Duration::from_secs(30), || async {
            b.cell_state("h2").await.filter(|s| s == "converged")
        })
        .await;
        std::fs::write(&motd, "edited by hand\n").unwrap();
        // The pass shows what it found, then heals it, live.
        until("h2 drifted on the page", Duration::from_secs(30), || async {
            b.cell_state("h2").await.filter(|s| s == "drifted")
        })
        .await;
        let st = until("h2 converged again", Duration::from_secs(60), || async {
            b.cell_state("h2").await.filter(|s| s == "converged")
        })
        .await;
        assert_eq!(st, "converged");
        assert_eq!(std::fs::read_to_string(&motd).unwrap(), want, "the file itself is back");
        let r = f.drover(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v[1]["drift"], serde_json::json!([]), "status agrees: {v:#}");
        b.close().await;
    });
    let store = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    let healed = store.history(Some("h2"), 10).unwrap();
    let run = healed
        .iter()
        .find(|h| h.outcome == drover_state::Outcome::Changed && h.run_id > 1)
        .unwrap_or_else(|| panic!("a recorded heal run for h2: {healed:#?}\n{:#?}", store.runs(20).unwrap()));
    let runs = store.runs(100).unwrap();
    let rr = runs.iter().find(|r| r.id == run.run_id).unwrap();
    assert_eq!(rr.command, "reconcile", "{rr:?}");
    assert!(
        store
            .history(Some("h1"), 10)
            .unwrap()
            .iter()
            .all(|h| h.run_id == 1 || h.outcome == drover_state::Outcome::Unchanged),
        "h1 was not touched"
    );
    // The heal run is counted in /metrics (results recorded since the start).
    let (_, text) = http(&srv.addr, "GET", "/metrics", &[], "");
    let samples = parse_prometheus(&text);
    let get = |name: &str, labels: &str| samples.iter().find(|(n, l, _)| n == name && l == labels).map(|s| s.2);
    assert_eq!(get("drover_host_results_total", "outcome=\"changed\""), Some(1.0), "{text}");
    // (0 bytes: the drifted file's content is still in the host's blob store.)
    assert_eq!(get("drover_bytes_sent_total", ""), Some(0.0), "{text}");
    assert_eq!(get("drover_host_run_duration_seconds_count", ""), Some(1.0), "{text}");
}

/// Healing takes host locks like a CLI `apply`: a host held by another run
/// is left alone (the page says why, the refused pass is recorded, the
/// server keeps serving) and healed once the lock is gone.
#[test]
fn heal_leaves_a_host_locked_by_another_run_alone_and_heals_it_once_released() {
    let f = Fleet::new("sv-lock", 2);
    quick(&f, "\n[serve]\nreconcile = \"heal\"\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let mut holder = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    let run = holder
        .begin_run(&drover_state::NewRun {
            command: "apply".into(),
            args: "(test holds h2)".into(),
            user: "test".into(),
            project_rev: "-".into(),
        })
        .unwrap();
    let lock = holder.lock_hosts(run, &["h2".to_string()]).unwrap();
    let motd = f.host_file(1, "/etc/motd");
    let want = std::fs::read_to_string(&motd).unwrap();
    std::fs::write(&motd, "edited by hand\n").unwrap();
    let srv = Server::start(&f, &["--reconcile", "1s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        let banner = until("the lock named on the page", Duration::from_secs(30), || async {
            let t = b.c().find(Locator::Css("#problems")).await.ok()?.text().await.ok()?;
            t.contains("being changed by another drover").then_some(t)
        })
        .await;
        assert!(banner.contains(&format!("run {run}")) && banner.contains("h2"), "{banner}");
        assert_eq!(b.cell_state("h2").await.as_deref(), Some("drifted"));
        assert_eq!(b.cell_state("h1").await.as_deref(), Some("converged"));
        assert_eq!(std::fs::read_to_string(&motd).unwrap(), "edited by hand\n", "a locked host is not touched");
        let refused = holder
            .runs(50)
            .unwrap()
            .into_iter()
            .filter(|r| r.command == "reconcile" && r.status == drover_state::RunStatus::Refused)
            .count();
        assert!(refused >= 1, "the refused pass is a recorded run");

        holder.unlock_hosts(lock).unwrap();
        until("h2 healed", Duration::from_secs(60), || async { b.cell_state("h2").await.filter(|s| s == "converged") })
            .await;
        assert_eq!(std::fs::read_to_string(&motd).unwrap(), want);
        b.close().await;
    });
}

/// Another process holding the state store's write lock (as a CLI run
/// does while it records) never stalls the server: the API answers from the
/// last snapshot at once, the page names the problem, and it clears when
/// the lock goes; a CLI `apply` beside a reconciling server succeeds.
#[test]
fn a_locked_state_store_never_stalls_the_server_and_a_cli_apply_runs_beside_it() {
    let f = Fleet::new("sv-busy", 2);
    quick(&f, "");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let srv = Server::start(&f, &["--reconcile", "1s"]);
    let first = Instant::now();
    while get_json(&srv.addr, "/api/status", &[])["pass"].as_u64().unwrap_or(0) < 1 {
        assert!(first.elapsed() < Duration::from_secs(30), "no first pass");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SQLite's own client holds the write lock for 15 s.
    let db = f.project().join(".drover/state.db");
    let mut locker = Command::new("python3")
        .args(["-c", "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(15)\nc.execute('COMMIT')"])
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(locker.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let locked_at = Instant::now();
    let mut slowest = Duration::ZERO;
    let problem = loop {
        let t = Instant::now();
        let s = get_json(&srv.addr, "/api/status", &[]);
        slowest = slowest.max(t.elapsed());
        assert_eq!(s["hosts"].as_array().map(Vec::len), Some(2), "the last snapshot is still served");
        let p = s["problems"].to_string();
        if p.contains("locked") {
            break p;
        }
        assert!(locked_at.elapsed() < Duration::from_secs(30), "the busy store never showed: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(slowest < Duration::from_millis(500), "a request waited {slowest:?} on the store");
    let (code, _) = http(&srv.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "metrics are served from the snapshot too");
    eprintln!("problem shown: {problem}; slowest request {slowest:?}");
    assert!(locker.wait().unwrap().success());
    let cleared = Instant::now();
    while !get_json(&srv.addr, "/api/status", &[])["problems"].as_array().unwrap().is_empty() {
        assert!(cleared.elapsed() < Duration::from_secs(30), "the problem never cleared");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A CLI apply beside the reconciling server: not refused, not blocked.
    std::fs::write(f.project().join("layers/site/etc/motd"), "changed under a running server\n").unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts().iter().all(|h| h["outcome"] == "changed"), "{}", r.stdout);
}
