//! A failed health gate says why on the dashboard too (issue #24, item 2):
//! the host's page shows, under the run that failed, the service, the
//! supervisor's state and exit code, and the last lines it logged.
//! Simulated hosts running the real agent code; the fake supervisor
//! crash-loops the service on demand.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::serve::{rt, simulated, until, Browser, Server};
use crate::support::{drover_in, ok};

#[test]
fn a_failed_gates_supervisor_state_and_log_lines_show_on_the_hosts_page() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 1);
    let sim = hosts.to_str().unwrap();
    ok(&drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]));
    // web now exits as it starts (code 98), having logged why.
    let exits = hosts.join("s1").join(drover_agent::supervisor::fake::EXITS);
    std::fs::create_dir_all(&exits).unwrap();
    std::fs::write(exits.join("web"), "98\n").unwrap();
    let log = hosts.join("s1/var/log/drover/web");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("current"), "2026-12-05_01:00:00.00001 OSError: [Errno 98] Address already in use\n")
        .unwrap();
    std::fs::write(proj.join("layers/site/srv/site/extra.html"), "changed\n").unwrap();
    let r = drover_in(&proj, &["apply", "--simulate", sim, "--sim-failure-rate", "0"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);

    let srv = Server::start_in(&proj, &["--simulate", sim, "--check-every", "1s"]);
    rt().block_on(async {
        let b = Browser::open().await;
        b.c().goto(&srv.url("/#/host/s1")).await.unwrap();
        let text = until("the failed run's report on s1's page", Duration::from_secs(30), || async {
            b.c().find(Locator::Css("#host-runs .failure")).await.ok()?.text().await.ok()
        })
        .await;
        assert!(text.contains("service web") && text.contains("exit code 98"), "{text}");
        assert!(text.contains("OSError: [Errno 98] Address already in use"), "{text}");
        b.close().await;
    });
}
