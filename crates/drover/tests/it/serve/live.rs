//! The live page: every host in the grid, a downed host turning unreachable
//! without a reload, per-host metrics, and a rollout started from the page.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{get_json, http, parse_prometheus, quick, rt, until, Browser, Server};
use crate::support::Fleet;

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
        // It asks first (see `confirm`).
        let ok = until("the confirmation dialog", Duration::from_secs(10), || async {
            b.c().find(Locator::Css("dialog#confirm[open] #confirm-ok")).await.ok()
        })
        .await;
        ok.click().await.unwrap();
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
