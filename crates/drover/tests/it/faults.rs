//! Flaky networks, on the lab fleet: a slow lossy link still converges, a
//! transfer cut mid-way resumes on the next run, a frozen host is reported
//! (with a reason) while the others finish. Each test has a lab of its own
//! (`perf-…`), so they run side by side. Root only, like the other lab tests.

use std::io::Read as _;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{noise, Fleet, Run};

/// Seconds a test waits for a run it expects to finish on its own.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

fn outcome(h: &serde_json::Value) -> &str {
    h["outcome"].as_str().unwrap_or("?")
}

fn by_name<'a>(hosts: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    hosts.iter().find(|h| h["host"] == name).unwrap_or_else(|| panic!("{name} not in the report"))
}

/// Fail fast on a stuck host instead of the project's 10 s connect timeout.
fn short_connect_timeout(fleet: &Fleet, t: &str) {
    let path = fleet.project().join("drover.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[apply]"), "the quickstart has an [apply] section");
    text = text.replace("[apply]\n", &format!("[apply]\nconnect-timeout = \"{t}\"\n"));
    std::fs::write(path, text).unwrap();
}

/// Wait for a spawned drover, killing it (and failing) past the deadline.
fn finish(mut child: Child, deadline: Duration) -> (Run, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            let mut stderr = String::new();
            child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (Run { code: status.code().unwrap_or(-1), stdout, stderr }, start.elapsed());
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("drover still running after {deadline:?}: a faulty host hung the run");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes held in the largest partial blob under a host's agent state.
fn partial_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map_or(0, |rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).max().unwrap_or(0))
}

/// A third of the fleet 100 ms away with 5% loss each way: everything
/// converges (retries absorb what TCP does not), and a second run is a no-op.
#[test]
fn delay_and_loss_on_a_third_of_the_fleet_converges() {
    let fleet = Fleet::new("perf-lossy", 6);
    let f = fleet.lab(&["fault", "h1,h2", "delay", "100ms", "loss", "5%"]);
    assert_eq!(f.code, 0, "{}", f.stderr);

    let run = fleet.apply_json(&[]);
    assert_eq!(run.code, 0, "apply over lossy links:\n{}\n{}", run.stdout, run.stderr);
    let hosts = run.hosts();
    assert_eq!(hosts.len(), 6);
    assert!(hosts.iter().all(|h| outcome(h) == "changed"), "{hosts:#?}");
    for i in 0..6 {
        assert!(fleet.host_file(i, "/srv/site/index.html").exists(), "h{} has the site", i + 1);
    }

    let again = fleet.apply_json(&[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.hosts().iter().all(|h| outcome(h) == "unchanged" && h["bytes_sent"] == 0), "{}", again.stdout);
}

/// The link to h1 goes down while a 30 MiB file is on its way: the run ends
/// (h1 failed, with a reason; h2 converged). After the link heals, the next
/// run sends only the rest of the file.
#[test]
fn a_transfer_cut_mid_way_resumes_on_the_next_run() {
    const SIZE: usize = 30 << 20;
    let fleet = Fleet::new("perf-cut", 2);
    short_connect_timeout(&fleet, "3s");
    let big = noise(SIZE);
    let dest = fleet.project().join("layers/site/opt/big.bin");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &big).unwrap();
    // Slow enough to catch mid-way (30 MiB at 24 Mbit/s is ~10 s).
    let f = fleet.lab(&["fault", "h1", "delay", "1ms", "rate", "24mbit"]);
    assert_eq!(f.code, 0, "{}", f.stderr);

    let child = fleet.spawn_drover(&["apply", "--json", "--op-timeout", "5s", "--retries", "1"]);
    let partial_dir = fleet.host_file(0, "/var/lib/drover/partial");
    let start = Instant::now();
    while partial_bytes(&partial_dir) < (SIZE as u64) * 6 / 10 {
        assert!(start.elapsed() < Duration::from_secs(90), "the transfer to h1 never got to 60%");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cut = fleet.lab(&["fault", "h1", "down"]);
    assert_eq!(cut.code, 0, "{}", cut.stderr);
    let held = partial_bytes(&partial_dir);

    let (run, took) = finish(child, RUN_DEADLINE);
    assert_eq!(run.code, 2, "h1 failed, so exit 2:\n{}\n{}", run.stdout, run.stderr);
    let hosts = run.hosts();
    let h1 = by_name(&hosts, "h1");
    assert!(matches!(outcome(h1), "failed" | "unreachable"), "{h1:#}");
    assert!(!h1["error"].as_str().unwrap_or("").is_empty(), "h1's failure has a reason: {h1:#}");
    assert_eq!(outcome(by_name(&hosts, "h2")), "changed", "h2 is not held back by h1");
    eprintln!("cut run took {took:?}; h1: {}", h1["error"]);

    let heal = fleet.lab(&["heal", "h1"]);
    assert_eq!(heal.code, 0, "{}", heal.stderr);
    assert!(partial_bytes(&partial_dir) >= held, "the partial blob survived the cut");

    let run = fleet.apply_json(&[]);
    assert_eq!(run.code, 0, "after healing:\n{}\n{}", run.stdout, run.stderr);
    let hosts = run.hosts();
    let h1 = by_name(&hosts, "h1");
    assert_eq!(outcome(h1), "changed", "{h1:#}");
    let sent = h1["bytes_sent"].as_u64().unwrap();
    assert!(sent < (SIZE as u64) / 2, "resumed, not restarted: sent {sent} of {SIZE} (held {held})");
    assert_eq!(outcome(by_name(&hosts, "h2")), "unchanged");
    assert!(std::fs::read(fleet.host_file(0, "/opt/big.bin")).unwrap() == big, "h1 has the whole file");
    assert_eq!(partial_bytes(&partial_dir), 0, "no partial blob left behind");
}

/// A frozen host (TCP answers, SSH never does) times out within the connect
/// timeout and is reported unreachable, while the rest of the fleet converges.
#[test]
fn a_frozen_host_times_out_and_is_reported() {
    let fleet = Fleet::new("perf-frozen", 4);
    short_connect_timeout(&fleet, "2s");
    let f = fleet.lab(&["fault", "h2", "freeze"]);
    assert_eq!(f.code, 0, "{}", f.stderr);

    let child = fleet.spawn_drover(&["apply", "--json", "--op-timeout", "5s", "--retries", "1"]);
    let (run, took) = finish(child, RUN_DEADLINE);
    let thaw = fleet.lab(&["fault", "h2", "thaw"]);
    assert_eq!(thaw.code, 0, "{}", thaw.stderr);

    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(took < Duration::from_secs(60), "a frozen host must not hold the run: {took:?}");
    let hosts = run.hosts();
    let h2 = by_name(&hosts, "h2");
    assert!(matches!(outcome(h2), "unreachable" | "failed"), "{h2:#}");
    let reason = h2["error"].as_str().unwrap_or("");
    assert!(reason.contains("timed out") || reason.contains("did not answer"), "a timeout reason: {reason}");
    for name in ["h1", "h3", "h4"] {
        assert_eq!(outcome(by_name(&hosts, name)), "changed", "{name} converged");
    }

    // Thawed, it catches up.
    let run = fleet.apply_json(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(outcome(by_name(&run.hosts(), "h2")), "changed");
}
