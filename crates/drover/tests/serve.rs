//! `drover serve` end to end: a real lab fleet, the real binary, and the
//! dashboard driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, over WebDriver). The grid shows every host, a host
//! taken down turns unreachable on the open page without a reload, drift
//! shows (report) or is healed (heal), `/metrics` parses as Prometheus
//! text with per-host series, and only an operator token with the CSRF
//! value can act.

#[macro_use]
#[allow(unused_macros)]
mod support;
mod serve_kit;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serve_kit::{get_json, http, parse_prometheus, quick, rt, until, Browser, Server};
use support::Fleet;

#[test]
fn grid_shows_every_host_a_downed_host_turns_unreachable_live_and_metrics_have_per_host_series() {
    let f = Fleet::new("sv-grid", 3);
    quick(&f, "");
    let web = f.project().join("services/web.toml");
    let t = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, t.replace("command = \"busybox", "command = \"echo hello from $(hostname); exec busybox"))
        .unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // Report policy (the default): a pass records itself, shows drift, heals nothing.
    std::fs::write(f.host_file(2, "/etc/motd"), "edited by hand\n").unwrap();
    let srv = Server::start(&f, &["--reconcile", "2s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        for (h, want) in [("h1", "converged"), ("h2", "converged"), ("h3", "drifted")] {
            let got = until(&format!("{h}'s cell"), Duration::from_secs(30), || b.cell_state(h)).await;
            assert_eq!(got, want, "{h}");
        }
        let cells = b.c().find_all(Locator::Css("#grid .cell")).await.unwrap();
        assert_eq!(cells.len(), 3, "one cell per host");

        // Marks this page load: still there later means no reload happened.
        b.c().execute("window.__same_page = 42; return 1;", vec![]).await.unwrap();
        let down = f.lab(&["fault", "h2", "down"]);
        assert_eq!(down.code, 0, "{}", down.stderr);
        let st = until("h2 unreachable on the page", Duration::from_secs(60), || async {
            b.cell_state("h2").await.filter(|s| s == "unreachable")
        })
        .await;
        assert_eq!(st, "unreachable");
        let same = b.c().execute("return window.__same_page === 42;", vec![]).await.unwrap();
        assert_eq!(same, serde_json::json!(true), "the cell changed by SSE, not by a reload");
        assert_eq!(b.cell_state("h1").await.as_deref(), Some("converged"), "h1 is untouched by h2's fault");
        assert_eq!(b.cell_state("h3").await.as_deref(), Some("drifted"), "report policy does not heal");
        b.screenshot("serve-grid.png").await;

        // The host page: services, health, drift file list, last runs.
        b.c().find(Locator::Css("#grid .cell[data-host='h3']")).await.unwrap().click().await.unwrap();
        let drift = until("h3's drift list", Duration::from_secs(10), || async {
            b.c().find(Locator::Css("#drift")).await.ok()?.text().await.ok()
        })
        .await;
        assert!(drift.contains("/etc/motd"), "{drift}");
        let page = b.c().find(Locator::Css("#host")).await.unwrap().text().await.unwrap();
        assert!(page.contains("web") && page.contains("changed"), "services and the apply run: {page}");
        let logs = until("h3's log lines", Duration::from_secs(20), || async {
            let t = b.c().find(Locator::Css("#host-logs")).await.ok()?.text().await.ok()?;
            (t != "loading…").then_some(t)
        })
        .await;
        assert!(logs.contains("web  hello from h3"), "recent log lines, fetched from the host: {logs}");
        b.screenshot("serve-host.png").await;
        b.close().await;
    });

    // The API is status --json's rows; the pass was recorded as a run.
    let s = get_json(&srv.addr, "/api/status", &[]);
    let h3 = s["hosts"].as_array().unwrap().iter().find(|h| h["host"] == "h3").unwrap();
    assert_eq!(h3["status"]["drift"], serde_json::json!(["/etc/motd"]));
    assert!(h3["status"]["generation"].is_u64(), "{h3}");
    let h2 = s["hosts"].as_array().unwrap().iter().find(|h| h["host"] == "h2").unwrap();
    assert!(h2["status"]["error"].is_string(), "{h2}");
    let hist = f.drover(&["history", "--json"]);
    let _ = hist;
    let store = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    assert!(store.runs(100).unwrap().iter().any(|r| r.command == "reconcile"), "each pass is a recorded run");
    assert_eq!(std::fs::read_to_string(f.host_file(2, "/etc/motd")).unwrap(), "edited by hand\n");

    // Without tokens, only pages opened by address or as localhost: a
    // rebinding domain that resolves to 127.0.0.1 gets nothing.
    let (code, body) = http(&srv.addr, "GET", "/api/session", &[("Host", "evil.example:7780")], "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("open this server by its address"), "{body}");
    let (code, _) = http(&srv.addr, "GET", "/api/session", &[("Host", "localhost:7780")], "");
    assert_eq!(code, 200);

    // /metrics: valid Prometheus text, per-host series.
    let (code, text) = http(&srv.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&text);
    let get = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    assert_eq!(get("drover_host_reachable", "host=\"h1\""), 1.0);
    assert_eq!(get("drover_host_reachable", "host=\"h2\""), 0.0);
    assert_eq!(get("drover_host_drift_files", "host=\"h3\""), 1.0);
    assert_eq!(get("drover_host_state", "host=\"h2\",state=\"unreachable\""), 1.0);
    assert!(get("drover_host_generation", "host=\"h1\"") >= 1.0);
    assert_eq!(get("drover_service_healthy", "host=\"h1\",service=\"web\""), 1.0);
    assert_eq!(get("drover_host_last_run_success", "host=\"h1\",outcome=\"changed\""), 1.0);
    assert_eq!(get("drover_hosts", "state=\"unreachable\""), 1.0);
    let _ = f.lab(&["heal", "h2"]);
}

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

#[test]
fn only_an_operator_token_with_the_csrf_value_can_act_and_the_audit_log_names_it() {
    let f = Fleet::new("sv-auth", 2);
    quick(&f, "");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // Not loopback without tokens: refused at start, saying what to do.
    let r = f.drover(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("without --token-file"), "{}", r.stderr);
    let tokens = f.project().join("tokens");
    std::fs::write(
        &tokens,
        "# name role token\nvera viewer vvvvvvvvvvvvvvvvvvvv\notto operator oooooooooooooooooooo\n",
    )
    .unwrap();
    // A bad token file names the line.
    let bad = f.project().join("bad-tokens");
    std::fs::write(&bad, "vera boss vvvvvvvvvvvvvvvvvvvv\n").unwrap();
    let r = f.drover(&["serve", "--listen", "127.0.0.1:0", "--token-file", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad-tokens:1: unknown role `boss`"), "{}", r.stderr);

    let srv = Server::start(&f, &["--token-file", tokens.to_str().unwrap(), "--check-every", "2s"]);
    let (code, _) = http(&srv.addr, "GET", "/api/status", &[], "");
    assert_eq!(code, 401, "no token, no data");
    let viewer = [("Authorization", "Bearer vvvvvvvvvvvvvvvvvvvv")];
    let operator = [("Authorization", "Bearer oooooooooooooooooooo")];
    let vs = get_json(&srv.addr, "/api/session", &viewer);
    assert_eq!(vs["role"], "viewer");
    let body = r#"{"hosts":"h2"}"#;
    let json = ("Content-Type", "application/json");
    let (code, msg) = http(
        &srv.addr,
        "POST",
        "/api/action/drain",
        &[viewer[0], json, ("X-Drover-CSRF", vs["csrf"].as_str().unwrap())],
        body,
    );
    assert_eq!(code, 403, "a viewer cannot act: {msg}");
    let os = get_json(&srv.addr, "/api/session", &operator);
    let (code, msg) = http(&srv.addr, "POST", "/api/action/drain", &[operator[0], json], body);
    assert_eq!(code, 403, "no CSRF value, no action: {msg}");
    let (code, msg) = http(
        &srv.addr,
        "POST",
        "/api/action/drain",
        &[operator[0], json, ("X-Drover-CSRF", vs["csrf"].as_str().unwrap())],
        body,
    );
    assert_eq!(code, 403, "another token's CSRF value does not count: {msg}");
    assert!(f.drover(&["status", "--json"]).stdout.contains("\"drained\": null"), "nothing was drained yet");
    let csrf = ("X-Drover-CSRF", os["csrf"].as_str().unwrap());
    let (code, msg) = http(&srv.addr, "POST", "/api/action/rollout-abort", &[operator[0], json, csrf], "{}");
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("no rollout in progress"), "the CLI's reason is passed on: {msg}");
    let (code, msg) = http(&srv.addr, "POST", "/api/action/reboot", &[operator[0], json, csrf], "{}");
    assert_eq!(code, 404, "{msg}");
    assert!(msg.contains("rollout-start"), "the known actions are listed: {msg}");

    // The operator acts from the page: the host page's drain button.
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/login?token=oooooooooooooooooooo")).await.unwrap();
        until("h2's cell", Duration::from_secs(30), || b.cell_state("h2")).await;
        b.c().goto(&srv.url("/#/host/h2")).await.unwrap();
        // (A live update may redraw the host page between find and click.)
        until("a click on the drain button", Duration::from_secs(10), || async {
            b.c().find(Locator::Css("#do-drain")).await.ok()?.click().await.ok()
        })
        .await;
        b.c().goto(&srv.url("/#/")).await.unwrap();
        let st = until("h2 drained", Duration::from_secs(60), || async {
            b.cell_state("h2").await.filter(|s| s == "drained")
        })
        .await;
        assert_eq!(st, "drained");
        b.close().await;
    });
    let store = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    let audit = store.audit_log(50).unwrap();
    assert!(audit.iter().any(|a| a.user == "otto" && a.command == "serve:drain" && a.args == "h2"), "{audit:#?}");
    assert!(!audit.iter().any(|a| a.user == "vera"), "the refused viewer did nothing: {audit:#?}");
    assert_eq!(store.drained().unwrap().iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["h2"]);
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

/// An operator starts a rollout from the page; its batches progress on the
/// open page (no reload) until it is done, and the hosts are on the new
/// generation.
#[test]
fn a_rollout_started_from_the_page_progresses_live_batch_by_batch() {
    let f = Fleet::new("sv-roll", 2);
    quick(&f, "\n[rollout]\nbatch = 1\ndelay = \"3s\"\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    std::fs::write(f.project().join("layers/site/etc/motd"), "rolled out from the dashboard\n").unwrap();
    let srv = Server::start(&f, &["--check-every", "2s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        until("h2's cell", Duration::from_secs(30), || b.cell_state("h2")).await;
        b.c().execute("window.__same_page = 7; return 1;", vec![]).await.unwrap();
        b.c().find(Locator::Css("#ro-start")).await.unwrap().click().await.unwrap();
        let info = |attr: &'static str| {
            let b = &b;
            async move { b.c().find(Locator::Css("#rollout-info")).await.ok()?.attr(attr).await.ok()? }
        };
        // Between the batches (a 3 s delay): one of two done, still running.
        until("batch 1 of 2 done while running", Duration::from_secs(60), || async {
            (info("data-done").await.as_deref() == Some("1") && info("data-status").await.as_deref() == Some("running"))
                .then_some(())
        })
        .await;
        until("the rollout done", Duration::from_secs(60), || async {
            (info("data-status").await.as_deref() == Some("done")).then_some(())
        })
        .await;
        assert_eq!(info("data-done").await.as_deref(), Some("2"));
        let same = b.c().execute("return window.__same_page === 7;", vec![]).await.unwrap();
        assert_eq!(same, serde_json::json!(true), "followed live, without a reload");
        b.close().await;
    });
    for i in 0..2 {
        assert_eq!(std::fs::read_to_string(f.host_file(i, "/etc/motd")).unwrap(), "rolled out from the dashboard\n");
    }
    let store = drover_state::Store::open(&f.project().join(".drover/state.db")).unwrap();
    let audit = store.audit_log(50).unwrap();
    assert!(audit.iter().any(|a| a.user == "local" && a.command == "serve:rollout-start"), "{audit:#?}");
    assert_eq!(store.rollouts(1).unwrap()[0].status, drover_state::RolloutStatus::Done);
}
