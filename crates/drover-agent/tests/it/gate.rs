//! The health gate on a simulated host, through the real agent binary: the
//! fake supervisor ([`drover_agent::supervisor::fake`]) reports a service
//! crash-looping when told to, and logs what the test writes to its log.

use std::fs;
use std::path::Path;

use drover_agent::supervisor::fake::{CALLS, EXITS};
use drover_proto::{
    ApplyOutcome, Exit, FailureCause, HealthCheck, HealthProbe, Manifest, Response, ServiceSpec, Supervisor,
    SupervisorState,
};

use crate::support::files::{files, manifest, read};
use crate::support::Agent;

fn agent(root: &Path) -> Agent {
    Agent::spawn(root, &["--simulated"], b"", 0)
}

/// `/etc/web.conf` with `conf` (web's restart trigger), and web with `probe`.
fn web(conf: &'static str, probe: HealthProbe) -> (Manifest, std::collections::BTreeMap<drover_proto::Hash, Vec<u8>>) {
    let (mut m, blobs) = manifest(&files(&[("/etc/web.conf", conf)]));
    m.services = vec![ServiceSpec {
        name: "web".into(),
        supervisor: Supervisor::Runit,
        triggers: vec!["/etc/web.conf".into()],
        reload_triggers: vec![],
        health: Some(HealthCheck { probe, timeout_ms: 1000, retries: 2, interval_ms: 10 }),
        after: vec![],
    }];
    (m, blobs)
}

fn calls(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join(CALLS)).unwrap_or_default().lines().map(String::from).collect()
}

/// The crash loop: web's new process exits at once (its port is
/// held by another process, which answers its TCP probe). The gate fails
/// on the supervisor's word, the generation is reverted, and the failure
/// says what the supervisor said (restarting, exit code 98) and what web
/// logged last.
#[test]
fn a_crash_looping_service_fails_its_gate_though_its_probe_passes() {
    let d = tempfile::tempdir().unwrap();
    let mut a = agent(d.path());
    let (m1, b1) = web("port = 8080\n", HealthProbe::Tcp { port: 8080 });
    let r = a.apply_manifest(m1, &b1, 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 1, .. })), "{r:?}");

    fs::create_dir_all(d.path().join(EXITS)).unwrap();
    fs::write(d.path().join(EXITS).join("web"), "98\n").unwrap();
    let log = d.path().join("var/log/drover/web");
    fs::create_dir_all(&log).unwrap();
    let lines = "2026-12-05_01:00:00.00001 starting web on :8080\n\
                 2026-12-05_01:00:00.00002 OSError: [Errno 98] Address already in use\n";
    fs::write(log.join("current"), lines).unwrap();
    let (m2, b2) = web("port = 8080\nworkers = 4\n", HealthProbe::Tcp { port: 8080 });
    let r = a.apply_manifest(m2, &b2, 0);
    let Response::Applied(ApplyOutcome::RolledBack { failed: 2, to: Some(1), reason, failure: Some(f), .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.service, "web");
    assert_eq!(f.cause, FailureCause::NotRunning {});
    assert_eq!(f.state.state, SupervisorState::Restarting { exit: Some(Exit::Code(98)) });
    assert_eq!(f.log, ["starting web on :8080", "OSError: [Errno 98] Address already in use"]);
    assert!(
        reason.contains("restarting (last exit: exit code 98)") && reason.contains("Address already in use"),
        "{reason}"
    );
    assert_eq!(read(d.path(), "/etc/web.conf").as_deref(), Some("port = 8080\n"), "reverted");
    a.bye();
}

/// A change to web's health check alone (no file, nothing restarts) makes
/// a generation whose check is run: a failing one (its stderr and exit
/// status in the failure) reverts it; a passing one keeps it. web is never
/// restarted for it.
#[test]
fn a_changed_health_check_is_run_and_a_failing_one_reverts_its_generation() {
    let d = tempfile::tempdir().unwrap();
    let mut a = agent(d.path());
    let (m1, b1) = web("a\n", HealthProbe::Command("true".into()));
    assert!(matches!(a.apply_manifest(m1, &b1, 0), Response::Applied(ApplyOutcome::Activated { .. })));
    let before = calls(d.path()).len();

    let failing = "echo checking db; echo 'db: connection refused' >&2; exit 3";
    let (m2, b2) = web("a\n", HealthProbe::Command(failing.into()));
    let r = a.apply_manifest(m2, &b2, 0);
    let Response::Applied(ApplyOutcome::RolledBack { failed: 2, to: Some(1), failure: Some(f), .. }) = r else {
        panic!("{r:?}")
    };
    let FailureCause::Probe { attempts: 2, error, output: Some(out), .. } = &f.cause else { panic!("{f:?}") };
    assert_eq!(error, "exit status 3: db: connection refused");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(3), "checking db", "db: connection refused")
    );

    let (m3, b3) = web("a\n", HealthProbe::Command("test -f etc/web.conf".into()));
    let r = a.apply_manifest(m3, &b3, 0);
    assert!(matches!(r, Response::Applied(ApplyOutcome::Activated { generation: 3, .. })), "{r:?}");
    assert_eq!(
        calls(d.path())[before..],
        ["health web command failed", "health web command ok"],
        "each changed check ran once, and nothing was restarted"
    );
    a.bye();
}
