//! A drained host's services are stopped on purpose: on a real lab host
//! their health probes fail, yet the page reads `drained`, never
//! `failing`; `/metrics` reports no failing service for it, and an
//! `unhealthy` alert does not fire.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{get_json, http, parse_prometheus, quick, rt, until, Browser, Hooks, Server};
use crate::support::Fleet;

#[test]
fn a_drained_hosts_stopped_services_read_drained_not_failing_in_the_page_metrics_and_alerts() {
    let f = Fleet::new("sv-drained", 2);
    let hooks = Hooks::start();
    quick(&f, &format!("\n[[alert]]\nname = \"sick\"\non = \"unhealthy\"\nwebhook = \"http://{}/ok\"\n", hooks.addr));
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let d = f.drover(&["drain", "h2", "--reason", "disk swap"]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let srv = Server::start(&f, &["--check-every", "1s"]);
    let st = crate::support::wait_until("three passes", Duration::from_secs(60), || {
        Some(get_json(&srv.addr, "/api/status", &[])).filter(|s| s["pass"].as_u64().unwrap_or(0) >= 3)
    });
    let h2 = st["hosts"].as_array().unwrap().iter().find(|h| h["host"] == "h2").unwrap().clone();
    assert_eq!(h2["state"], "drained", "{h2:#}");
    let web = h2["status"]["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap();
    assert_eq!(web["healthy"], false, "the probe itself fails (the service is stopped): {web}");

    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/#/host/h2")).await.unwrap();
        let health = until("h2's services", Duration::from_secs(20), || async {
            let cell = b.c().find(Locator::Css("#services tr[data-service='web'] td.health")).await.ok()?;
            cell.text().await.ok()
        })
        .await;
        assert_eq!(health, "drained");
        let page = b.c().find(Locator::Css("#host")).await.unwrap().text().await.unwrap();
        assert!(!page.contains("failing"), "{page}");
        assert!(page.contains("disk swap"), "{page}");
        b.c().goto(&srv.url("/#/")).await.unwrap();
        let cell = until("h2's cell", Duration::from_secs(20), || b.cell_state("h2")).await;
        assert_eq!(cell, "drained");
        b.close().await;
    });

    let (_, text) = http(&srv.addr, "GET", "/metrics", &[], "");
    let samples = parse_prometheus(&text);
    let health = |h: &str| {
        samples.iter().find(|(n, l, _)| n == "drover_service_healthy" && l == &format!("host=\"{h}\",service=\"web\""))
    };
    assert!(health("h1").is_some_and(|s| s.2 == 1.0), "{text}");
    assert!(health("h2").is_none(), "no failing series for a drained host: {text}");
    assert!(hooks.at("/ok").is_empty(), "no unhealthy alert for a drained host: {:?}", hooks.at("/ok"));
}
