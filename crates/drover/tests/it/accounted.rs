//! Every host is accounted for (#10.4): a host whose task dies is reported,
//! not dropped; a revert that leaves a service down says so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::Fleet;
use drover::exit::ExitStatus;
use drover::host::{Mode, Outcome, StateSource};
use drover::progress::Progress;
use drover::run::fleet::Fleet as HostFleet;
use drover::run::{Overrides, RunReport, RunSpec, Settings};
use drover::transport::sim::{LinkShape, Sim};
use drover::transport::{Timeouts, Transport};
use drover_proto::Facts;
use drover_spec::{Compiled, Host, Project};

/// The project's state, except that compiling for one host panics: a bug in
/// drover, injected from the test (no such hook exists in drover itself).
struct PanicsOn {
    project: Project,
    host: &'static str,
}

impl StateSource for PanicsOn {
    fn compile(&self, host: &Host, facts: &Facts, generation: u64) -> Result<Compiled, String> {
        if host.name == self.host {
            panic!("injected bug while compiling for {}", host.name);
        }
        StateSource::compile(&self.project, host, facts, generation)
    }
}

/// A quickstart project with simulated hosts s1..s3, and their transport
/// (in-process agents, each with a root directory of its own).
fn simulated_hosts(dir: &Path) -> (Project, Transport) {
    let project = Project::load(&crate::support::sim_project(dir, 3)).unwrap();
    let sim = Sim::new(dir.join("hosts"), LinkShape::default(), false);
    (project, Transport::Sim(Arc::new(sim)))
}

const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(5), op: Duration::from_secs(30) };

#[test]
fn a_panicking_host_task_is_reported_failed_and_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, transport) = simulated_hosts(tmp.path());
    let hosts = project.hosts.clone();
    let settings = Settings { confirm_timeout: None, parallel: 3, connect_timeout: TIMEOUTS.connect };
    let o = Overrides { retries: Some(2), op_timeout: Some(TIMEOUTS.op), ..Default::default() };
    let spec = RunSpec::new(Arc::new(PanicsOn { project, host: "s2" }), transport, Mode::Apply, settings, &o);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reports = rt.block_on(drover::run::schedule::sessions(&spec, hosts, Progress::new(3, false)));
    let got: Vec<(&str, Outcome)> = reports.iter().map(|r| (r.host.as_str(), r.outcome)).collect();
    assert_eq!(got, [("s1", Outcome::Changed), ("s2", Outcome::Failed), ("s3", Outcome::Changed)]);
    let err = reports[1].error.as_deref().unwrap_or_default();
    assert!(err.contains("panicked") && err.contains("injected bug while compiling for s2"), "{err}");
    let run = RunReport {
        command: "apply".into(),
        hosts: reports,
        duration_ms: 0,
        phases: Default::default(),
        instances: vec![],
    };
    assert_eq!(ExitStatus::of_run(&run).code(), 2);
    assert!(run.table(false).lines().any(|l| l.starts_with("s2") && l.contains("failed") && l.contains("panicked")));
}

/// The same for one-request operations (status, exec, logs, drain, the
/// rollout's health gates): the host's line is an error, not missing.
#[test]
fn a_panicking_fleet_task_is_that_hosts_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, transport) = simulated_hosts(tmp.path());
    let fleet = HostFleet { transport, timeouts: TIMEOUTS, parallel: 3 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt.block_on(fleet.each(&project.hosts, |h, c| async move {
        if h.name == "s3" {
            panic!("injected bug on {}", h.name);
        }
        c.close().await;
        Ok(h.name)
    }));
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], ("s1".to_string(), Ok("s1".to_string())));
    let (name, res) = &results[2];
    assert_eq!(name, "s3");
    let err = res.as_ref().unwrap_err();
    assert!(err.contains("panicked") && err.contains("injected bug on s3"), "{err}");
}

/// Generation 2 fails its health check, and the check also cuts runit's
/// control pipe of the service (`supervise/ok`), so the revert cannot
/// restart it: the host is rolled back, and the summary and `--json` say
/// which service the revert left down (today that error is dropped).
#[test]
fn a_revert_that_cannot_restart_a_service_is_reported() {
    let f = Fleet::new("acct-revert", 1);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let svc = f.project().join("services/web.toml");
    let text = std::fs::read_to_string(&svc).unwrap();
    let head = text.split("[health]").next().unwrap();
    std::fs::write(
        &svc,
        format!(
            "{head}[health]\ncommand = \"rm -f /etc/service/web/supervise/ok; exit 1\"\nretries = 1\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    std::fs::write(f.project().join("layers/site/srv/site/index.html.j2"), "generation {{ generation }}\n").unwrap();

    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h}");
    assert_eq!(h["generation"], 1, "{h}");
    let errors = h["revert_errors"].as_array().unwrap_or_else(|| panic!("no revert_errors: {h}"));
    assert_eq!(errors.len(), 1, "{h}");
    assert!(errors[0].as_str().unwrap().contains("service web"), "{h}");

    // The table says it too (generation 3 fails the same way).
    let table = f.drover(&["apply"]);
    assert_eq!(table.code, 2, "{}", table.stdout);
    let line = table.stdout.lines().find(|l| l.contains("rolled-back")).unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(line.contains("revert left a service down") && line.contains("service web"), "{line}");
}

/// Magic rollback with nobody connected: generation 2 is activated (its
/// health check passes, but cuts runit's control pipe of `web`), the
/// session dies before confirming, and the detached watchdog reverts it,
/// unable to restart `web`. The next contact reports both the revert and
/// the service it left down.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn a_watchdog_revert_that_leaves_a_service_down_is_reported_at_the_next_contact() {
    let f = Fleet::new("acct-watchdog", 1);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let svc = f.project().join("services/web.toml");
    let text = std::fs::read_to_string(&svc).unwrap();
    let head = text.split("[health]").next().unwrap();
    // The check passes and breaks runsv's control FIFO: the revert cannot
    // start web again (the gate still reads runsv's status record).
    let health = "[health]\ncommand = \"rm -f /etc/service/web/supervise/control\"\nretries = 1\ntimeout = \"2s\"\n";
    std::fs::write(&svc, format!("{head}{health}")).unwrap();
    std::fs::write(f.project().join("layers/site/srv/site/index.html.j2"), "generation {{ generation }}\n").unwrap();
    // Held after activation until killed: no confirmation ever comes.
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    std::fs::write(&hook, "awaiting-confirm").unwrap();
    let mut apply = f.spawn_drover(&["apply", "--confirm-timeout", "2s"]);
    let start = std::time::Instant::now();
    while !f.host_file(0, "/var/lib/drover/test-hook.reached").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "the agent never reached awaiting-confirm");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(&hook).unwrap();
    let _ = apply.kill();
    let _ = apply.wait();
    assert_eq!(f.kill_agent(0), 1);
    let report = f.host_file(0, "/var/lib/drover/watchdog-report.json");
    while !report.exists() {
        assert!(start.elapsed() < Duration::from_secs(90), "the watchdog did not revert");
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = f.drover(&["plan", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["generation"], 1, "{h}");
    assert!(h["recovered"].as_str().unwrap_or_default().contains("watchdog"), "{h}");
    let errors = h["revert_errors"].as_array().unwrap();
    assert!(errors.len() == 1 && errors[0].as_str().unwrap().contains("service web"), "{h}");
}
