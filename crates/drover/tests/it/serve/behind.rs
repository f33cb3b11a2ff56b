//! A host rolled back is `behind` the project: its own state in the grid
//! (colour and filter), in `/api/status` and in `/metrics`, never counted
//! converged. Simulated hosts running the real agent code.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{get_json, http, parse_prometheus, rt, simulated, until, Browser, Server};
use crate::support::{drover_in, ok};

#[test]
fn a_rolled_back_host_is_behind_in_the_grid_the_api_and_metrics_and_never_counted_converged() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 2);
    let sim = hosts.to_str().unwrap();
    std::fs::write(proj.join("layers/site/etc/motd"), "release 2\n").unwrap();
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    ok(&drover_in(&proj, &["rollback", "--hosts", "s2", "--simulate", sim, "--sim-failure-rate", "0"]));
    assert_ne!(std::fs::read_to_string(hosts.join("s2/etc/motd")).unwrap(), "release 2\n", "s2 was rolled back");

    let srv = Server::start_in(&proj, &["--simulate", sim, "--check-every", "1s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/")).await.unwrap();
        let st = until("s2 behind on the page", Duration::from_secs(60), || async {
            b.cell_state("s2").await.filter(|s| s != "converged")
        })
        .await;
        assert_eq!(st, "behind");
        assert_eq!(b.cell_state("s1").await.as_deref(), Some("converged"));
        // Its own colour…
        let colour = |h: &'static str| {
            let b = &b;
            async move {
                let js = format!(
                    "return getComputedStyle(document.querySelector(\"#grid .cell[data-host='{h}']\")).backgroundColor;"
                );
                b.c().execute(&js, vec![]).await.unwrap().as_str().unwrap().to_string()
            }
        };
        assert_ne!(colour("s2").await, colour("s1").await, "behind is not converged's colour");
        // …its own count and filter.
        let n = b.c().find(Locator::Css("#n-behind")).await.unwrap().text().await.unwrap();
        assert_eq!(n, "1");
        b.c().find(Locator::Css("#f-state option[value='behind']")).await.unwrap().click().await.unwrap();
        // The page filters on the select's change (and again on each pass's update).
        until("the filter applied", Duration::from_secs(10), || async {
            let shown = b.c().find(Locator::Css("#shown")).await.ok()?.text().await.ok()?;
            (shown == "1 of 2 shown").then_some(())
        })
        .await;
        let visible = b.c().find_all(Locator::Css("#grid .cell:not(.hidden)")).await.unwrap();
        assert_eq!(visible.len(), 1);
        assert_eq!(visible[0].attr("data-host").await.unwrap().as_deref(), Some("s2"));
        b.c().goto(&srv.url("/#/host/s2")).await.unwrap();
        let badge = until("s2's page", Duration::from_secs(10), || async {
            b.c().find(Locator::Css("#host-state")).await.ok()?.text().await.ok()
        })
        .await;
        assert_eq!(badge, "behind");
        let why = b.c().find(Locator::Css("#state-why")).await.unwrap().text().await.unwrap();
        assert!(why.contains("not on the project's desired state"), "{why}");
        b.close().await;
    });

    let s = get_json(&srv.addr, "/api/status", &[]);
    let state = |h: &str| s["hosts"].as_array().unwrap().iter().find(|x| x["host"] == h).unwrap()["state"].clone();
    assert_eq!((state("s1"), state("s2")), ("converged".into(), "behind".into()), "{s:#}");
    assert_eq!((s["counts"]["behind"].as_u64(), s["counts"]["converged"].as_u64()), (Some(1), Some(1)), "{s:#}");

    let (code, text) = http(&srv.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&text);
    let get = |name: &str, labels: &str| samples.iter().find(|(n, l, _)| n == name && l == labels).map(|s| s.2);
    assert_eq!(get("drover_host_state", "host=\"s2\",state=\"behind\""), Some(1.0), "{text}");
    assert_eq!(get("drover_host_state", "host=\"s2\",state=\"converged\""), None, "{text}");
    assert_eq!(get("drover_hosts", "state=\"behind\""), Some(1.0), "{text}");
    assert_eq!(get("drover_hosts", "state=\"converged\""), Some(1.0), "{text}");

    // Applied again, it is converged again (it was the project it lacked).
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    crate::support::wait_until("s2 converged again", Duration::from_secs(30), || {
        let s = get_json(&srv.addr, "/api/status", &[]);
        (s["counts"]["converged"].as_u64() == Some(2)).then_some(())
    });
}
