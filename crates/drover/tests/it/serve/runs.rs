//! The runs page: one row per run with its command, operator, revision and
//! human sizes; a plot of run durations; a run's timeline of host bars
//! split by phase; and the rollout box naming the project's error while
//! drover.toml does not parse. Simulated hosts running the real agent code.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{rt, simulated, until, Browser, Server};
use crate::support::{drover_in, ok};

async fn attrs(b: &Browser, css: &str, attr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.c().find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.attr(attr).await.unwrap().unwrap_or_default());
    }
    out
}

#[test]
fn runs_are_grouped_with_command_operator_revision_and_sizes_with_a_duration_plot_and_a_phase_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 3);
    let sim = hosts.to_str().unwrap();
    // A second apply that ships 40 KiB to each host, and a plan.
    std::fs::write(proj.join("layers/site/etc/motd"), crate::support::noise(40 * 1024)).unwrap();
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    std::fs::write(proj.join("layers/site/etc/motd"), "planned only\n").unwrap();
    ok(&drover_in(&proj, &["plan", "--simulate", sim, "--sim-failure-rate", "0"]));
    let store = drover_state::Store::open(&proj.join(".drover/state.db")).unwrap();
    let runs = store.runs(10).unwrap();
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let second = runs.iter().find(|r| r.command == "apply" && r.id != runs.last().unwrap().id).unwrap().clone();
    let results = store.run_results(second.id).unwrap();
    assert_eq!(results.len(), 3);
    let sent: i64 = results.iter().map(|r| r.bytes_sent).sum();
    assert!(sent > 1024, "the second apply sent the file: {sent}");

    let srv = Server::start_in(&proj, &["--simulate", sim, "--check-every", "1s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/#/runs")).await.unwrap();
        until("the runs table", Duration::from_secs(20), || async {
            b.c().find(Locator::Css("#runs-table")).await.ok()
        })
        .await;
        // One row per run (not per host), newest first.
        let ids = attrs(&b, "#runs-table tr[data-run]", "data-run").await;
        let want: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, want);
        for r in &runs {
            let row = b.c().find(Locator::Css(&format!("#runs-table tr[data-run='{}']", r.id))).await.unwrap();
            let text = row.text().await.unwrap();
            assert!(text.contains(&r.command) && text.contains(&r.user) && text.contains(&r.project_rev), "{text}");
            let hosts = row.find(Locator::Css("td.hosts")).await.unwrap().text().await.unwrap();
            let outcome = if r.command == "plan" { "3 planned" } else { "3 changed" };
            assert_eq!(hosts, outcome, "run {}", r.id);
        }
        let row = b.c().find(Locator::Css(&format!("#runs-table tr[data-run='{}']", second.id))).await.unwrap();
        let cell = row.find(Locator::Css("td.sent")).await.unwrap().text().await.unwrap();
        assert_eq!(cell, drover::human::bytes(sent as u64), "human size");
        assert!(cell.ends_with("KiB"), "{cell}");

        // The plot: one dot per finished run, at its duration.
        let dots = attrs(&b, "svg#durations circle.run-dot", "data-run").await;
        assert_eq!(dots, want, "one dot per run");
        let ms = attrs(&b, "svg#durations circle.run-dot", "data-ms").await;
        for (r, m) in runs.iter().zip(&ms) {
            assert_eq!(m, &(r.finished_ms.unwrap() - r.started_ms).to_string(), "run {}", r.id);
        }

        b.screenshot("serve-runs.png").await;

        // A run's page: one bar per host, split by its stored phases.
        b.c()
            .find(Locator::Css(&format!("#runs-table tr[data-run='{}'] a", second.id)))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the timeline", Duration::from_secs(20), || async {
            b.c().find(Locator::Css("svg#timeline")).await.ok()
        })
        .await;
        let bars = attrs(&b, "svg#timeline g.bar", "data-host").await;
        assert_eq!(bars, ["s1", "s2", "s3"]);
        for r in &results {
            let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap();
            let bar = format!("svg#timeline g.bar[data-host='{}']", r.host);
            let total = attrs(&b, &bar, "data-ms").await;
            assert_eq!(total, [r.duration_ms.to_string()]);
            let mut shown = 0;
            for phase in ["connect", "hello", "diff", "send", "activate", "restart", "health", "confirm"] {
                let want = detail["phases"][format!("{phase}_ms")].as_f64().unwrap();
                let got = attrs(&b, &format!("{bar} rect[data-phase='{phase}']"), "data-ms").await;
                match got.as_slice() {
                    [] => assert_eq!(want, 0.0, "{} {phase}", r.host),
                    [g] => {
                        assert_eq!(g.parse::<f64>().unwrap(), want, "{} {phase}", r.host);
                        shown += 1;
                    }
                    more => panic!("{} {phase}: {more:?}", r.host),
                }
            }
            assert!(shown >= 3, "{}: connect, hello, diff at least ({shown})", r.host);
        }
        let title = b.c().find(Locator::Css("#run-title")).await.unwrap().text().await.unwrap();
        assert!(title.starts_with(&format!("run {}: apply", second.id)), "{title}");
        let sent_cells = attrs(&b, "#run-hosts tr[data-host]", "data-host").await;
        assert_eq!(sent_cells.len(), 3);
        b.screenshot("serve-run.png").await;
        b.close().await;
    });
}

#[test]
fn while_drover_toml_does_not_parse_the_rollout_box_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 1);
    let srv = Server::start_in(&proj, &["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"]);
    let toml = proj.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let line = text.lines().count() + 2;
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        let info = || {
            let b = &b;
            async move { b.c().find(Locator::Css("#rollout-info")).await.ok()?.text().await.ok() }
        };
        until("no rollout yet", Duration::from_secs(30), || async { info().await.filter(|t| t == "no rollout yet") })
            .await;
        std::fs::write(&toml, format!("{text}\n[apply\n")).unwrap();
        let said = until("the project's error in the rollout box", Duration::from_secs(30), || async {
            info().await.filter(|t| t.contains("does not load"))
        })
        .await;
        assert!(said.contains(&format!("drover.toml:{line}")), "names the file and line: {said}");
        assert!(!said.contains("no rollout yet"), "{said}");
        let start = b.c().find(Locator::Css("#ro-start")).await.unwrap();
        assert!(!start.is_enabled().await.unwrap(), "no rollout can start from a broken project");
        std::fs::write(&toml, &text).unwrap();
        until("the box back to normal", Duration::from_secs(30), || async {
            info().await.filter(|t| t == "no rollout yet")
        })
        .await;
        assert!(b.c().find(Locator::Css("#ro-start")).await.unwrap().is_enabled().await.unwrap());
        b.close().await;
    });
}
