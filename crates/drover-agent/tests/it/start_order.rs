//! Start order (`ServiceSpec::after`) on a simulated host, through the
//! real agent binary: a service that comes after another is started only
//! once the other passed its health gate, whatever their manifest order.

use std::fs;
use std::path::Path;

use drover_agent::supervisor::fake::CALLS;
use drover_proto::{ApplyOutcome, HealthCheck, HealthProbe, Response, ServiceSpec, Supervisor};

use crate::support::files::{files, manifest};
use crate::support::Agent;

fn spec(name: &str, trigger: &str, health: Option<&str>, after: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        supervisor: Supervisor::Runit,
        triggers: vec![trigger.into()],
        reload_triggers: vec![],
        health: health.map(|c| HealthCheck {
            probe: HealthProbe::Command(c.into()),
            timeout_ms: 1000,
            retries: 3,
            interval_ms: 10,
        }),
        after: after.iter().map(|s| s.to_string()).collect(),
    }
}

fn calls(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join(CALLS)).unwrap_or_default().lines().map(String::from).collect()
}

/// `a-web` (first by name) comes after `b-db`; `c-worker` after both. The
/// first apply starts all three: db first and through its gate, then web
/// and its gate, then the worker. A later apply that restarts only web and
/// the worker waits for web, not for db (untouched, still running).
#[test]
fn services_start_after_the_ones_they_name_passed_their_gate() {
    let d = tempfile::tempdir().unwrap();
    let mut a = Agent::spawn(d.path(), &["--simulated"], b"", 0);
    let gen = |v: &'static str| {
        let (mut m, b) = manifest(&files(&[("/etc/db.conf", "1\n"), ("/etc/web.conf", v), ("/etc/worker.conf", v)]));
        m.services = vec![
            spec("a-web", "/etc/web.conf", Some("true"), &["b-db"]),
            spec("b-db", "/etc/db.conf", Some("true"), &[]),
            spec("c-worker", "/etc/worker.conf", None, &["a-web", "b-db"]),
        ];
        (m, b)
    };
    let (m1, b1) = gen("1\n");
    let r = a.apply_manifest(m1, &b1, 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 1, .. })), "{r:?}");
    assert_eq!(
        calls(d.path()),
        [
            "start b-db",
            "health b-db command ok",
            "start a-web",
            "health a-web command ok",
            "start c-worker",
            "health a-web command ok",
            "health b-db command ok",
        ]
    );
    let before = calls(d.path()).len();
    let (m2, b2) = gen("2\n");
    let r = a.apply_manifest(m2, &b2, 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 2, .. })), "{r:?}");
    assert_eq!(
        calls(d.path())[before..],
        ["restart a-web", "health a-web command ok", "restart c-worker", "health a-web command ok"]
    );
    a.bye();
}
