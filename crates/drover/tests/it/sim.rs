//! The simulated transport, driven through the real binary: the whole apply
//! pipeline (compile, diff, pipelined blobs, journaled activation, confirm
//! over a new connection) against in-process agents, each with a root
//! directory of its own, over links with latency and failures. No root and
//! no lab needed.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{noise, sim_project as project, Run, DROVER};

fn apply(proj: &Path, hosts: &Path, extra: &[&str]) -> Run {
    let out = Command::new(DROVER)
        .arg("-C")
        .arg(proj)
        .args(["apply", "--json", "--simulate"])
        .arg(hosts)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(out)
}

fn outcomes(run: &Run) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for h in run.hosts() {
        *m.entry(h["outcome"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    m
}

/// 100 hosts, 30 ms away, a fifth of all connections refused or reset
/// mid-session: retries absorb it and every host converges; the next run is
/// a no-op with zero bytes sent; a changed template reaches every host.
#[test]
fn a_flaky_simulated_fleet_converges_and_then_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 100);
    let hosts = tmp.path().join("hosts");
    let flaky = ["--sim-latency", "30ms", "--sim-failure-rate", "0.2", "--retries", "8"];

    let first = apply(&proj, &hosts, &flaky);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(outcomes(&first).get("changed"), Some(&100), "{}", first.stdout);
    let retried: u64 = first.hosts().iter().map(|h| h["attempts"].as_u64().unwrap() - 1).sum();
    assert!(retried > 0, "a 20% failure rate over 100 hosts made some attempt fail and retry");
    for i in [1, 50, 100] {
        let page = std::fs::read_to_string(hosts.join(format!("s{i}/srv/site/index.html"))).unwrap();
        assert!(page.contains(&format!("s{i}")), "s{i}'s page names it: {page}");
    }

    let again = apply(&proj, &hosts, &flaky);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(outcomes(&again).get("unchanged"), Some(&100), "{}", again.stdout);
    assert!(again.hosts().iter().all(|h| h["bytes_sent"] == 0 && h["files_written"] == 0));

    let tpl = proj.join("layers/site/srv/site/index.html.j2");
    let mut text = std::fs::read_to_string(&tpl).unwrap();
    text.push_str("\n<!-- second edition -->\n");
    std::fs::write(&tpl, text).unwrap();
    let change = apply(&proj, &hosts, &flaky);
    assert_eq!(change.code, 0, "{}\n{}", change.stdout, change.stderr);
    assert_eq!(outcomes(&change).get("changed"), Some(&100), "{}", change.stdout);
    let page = std::fs::read_to_string(hosts.join("s77/srv/site/index.html")).unwrap();
    assert!(page.contains("second edition"), "{page}");
}

/// When every connection fails, each host is reported with its reason and
/// the run ends (exit 2) instead of retrying forever. (A failing simulated
/// connection is refused, or reset within its first 16 KiB: the 64 KiB of
/// noise makes sure no session finishes before its reset.)
#[test]
fn hosts_that_never_answer_are_reported_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 5);
    std::fs::create_dir_all(proj.join("layers/site/opt")).unwrap();
    std::fs::write(proj.join("layers/site/opt/noise.bin"), noise(64 * 1024)).unwrap();
    let run = apply(&proj, &tmp.path().join("hosts"), &["--sim-failure-rate", "1", "--retries", "2"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    for h in run.hosts() {
        assert_ne!(h["outcome"], "changed", "{h:#}");
        assert_eq!(h["attempts"], 3, "first try plus two retries: {h:#}");
        assert!(!h["error"].as_str().unwrap_or("").is_empty(), "a reason: {h:#}");
    }
}

/// A second service, `worker`, next to the quickstart's `web`: restarted by
/// `/etc/worker/bin.conf`, reloaded by `/etc/worker/site.conf`, healthy while
/// its site.conf has a greeting (a command probe, run in the simulated host's
/// root).
fn add_worker(proj: &Path) {
    std::fs::write(
        proj.join("services/worker.toml"),
        "command = \"sleep infinity\"\nrestart-on = [\"/etc/worker/bin.conf\"]\n\
         reload-on = [\"/etc/worker/site.conf\"]\n\n[health]\ncommand = \"grep -q greeting etc/worker/site.conf\"\n\
         timeout = \"2s\"\nretries = 2\ninterval = \"10ms\"\n",
    )
    .unwrap();
    let role = std::fs::read_to_string(proj.join("roles/site.toml")).unwrap();
    std::fs::write(
        proj.join("roles/site.toml"),
        role.replace("services = [\"web\"]", "services = [\"web\", \"worker\"]"),
    )
    .unwrap();
    std::fs::create_dir_all(proj.join("layers/site/etc/worker")).unwrap();
    std::fs::write(proj.join("layers/site/etc/worker/bin.conf"), "threads = 4\n").unwrap();
    std::fs::write(proj.join("layers/site/etc/worker/site.conf"), "greeting = hi\n").unwrap();
}

/// The lines the fake supervisor of simulated host `host` recorded since
/// `seen` lines ago; advances `seen`.
fn new_calls(hosts: &Path, host: &str, seen: &mut usize) -> Vec<String> {
    let calls = std::fs::read_to_string(hosts.join(host).join(drover_agent::supervisor::fake::CALLS)).unwrap();
    let lines: Vec<String> = calls.lines().map(String::from).collect();
    let new = lines[*seen..].to_vec();
    *seen = lines.len();
    new
}

/// Simulated hosts go through the real service path: a first apply starts
/// both services and probes them; a change to web's content restarts web
/// exactly once and leaves worker alone; a change to worker's `reload-on`
/// file reloads worker and nothing else; a no-op drives nothing. Asserted
/// from the fake supervisor's record on every host. (Links keep their
/// default latency and bandwidth; failures are off so that the record is
/// exact.)
#[test]
fn simulated_hosts_restart_only_changed_services_and_reload_on_reload_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 3);
    add_worker(&proj);
    let hosts = tmp.path().join("hosts");
    let flags = ["--sim-failure-rate", "0"];
    let hosts_names = ["s1", "s2", "s3"];
    let mut seen = [0usize; 3];
    let check = |seen: &mut [usize; 3], want: &[&str], sorted: bool| {
        for (i, h) in hosts_names.iter().enumerate() {
            let mut got = new_calls(&hosts, h, &mut seen[i]);
            if sorted {
                got.sort();
            }
            assert_eq!(got, want, "{h}'s fake supervisor record");
        }
    };

    let first = apply(&proj, &hosts, &flags);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let started = ["health web http ok", "health worker command ok", "start web", "start worker"];
    check(&mut seen, &started, true);

    let noop = apply(&proj, &hosts, &flags);
    assert_eq!(outcomes(&noop).get("unchanged"), Some(&3), "{}", noop.stdout);
    check(&mut seen, &[], false);

    let tpl = proj.join("layers/site/srv/site/index.html.j2");
    std::fs::write(&tpl, std::fs::read_to_string(&tpl).unwrap() + "\n<!-- v2 -->\n").unwrap();
    let web = apply(&proj, &hosts, &flags);
    assert_eq!(outcomes(&web).get("changed"), Some(&3), "{}", web.stdout);
    check(&mut seen, &["restart web", "health web http ok"], false);

    std::fs::write(proj.join("layers/site/etc/worker/site.conf"), "greeting = hello\n").unwrap();
    let reload = apply(&proj, &hosts, &flags);
    assert_eq!(outcomes(&reload).get("changed"), Some(&3), "{}", reload.stdout);
    check(&mut seen, &["reload worker", "health worker command ok"], false);
}

/// A health command that fails on a simulated host fails the generation
/// there as on a real one: the host is reported rolled back (the
/// file the probe reads is back as it was, and the fake saw the failed probe
/// and the service put back).
#[test]
fn a_failing_health_command_on_a_simulated_host_reverts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 1);
    add_worker(&proj);
    let hosts = tmp.path().join("hosts");
    let flags = ["--sim-failure-rate", "0"];
    let first = apply(&proj, &hosts, &flags);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let mut seen = 0;
    new_calls(&hosts, "s1", &mut seen);

    // A site.conf (a reload-on path) without a greeting reloads worker,
    // whose probe then fails.
    std::fs::write(proj.join("layers/site/etc/worker/site.conf"), "nothing\n").unwrap();
    let bad = apply(&proj, &hosts, &flags);
    assert_ne!(bad.code, 0, "{}\n{}", bad.stdout, bad.stderr);
    let h = &bad.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h:#}");
    assert!(h["error"].as_str().unwrap_or("").contains("health command"), "{h:#}");
    let conf = std::fs::read_to_string(hosts.join("s1/etc/worker/site.conf")).unwrap();
    assert_eq!(conf, "greeting = hi\n", "reverted: site.conf is back as it was");
    let calls = new_calls(&hosts, "s1", &mut seen);
    assert_eq!(calls[..2], ["reload worker", "health worker command failed"], "{calls:?}");
    assert!(calls[2..].contains(&"reload worker".to_string()), "put back after the revert: {calls:?}");
}

/// The state a SIGKILLed agent leaves when it dies between writing a blob's
/// last chunk and moving it into the store (during that fsync): all of the
/// blob's bytes in `partial/`, none in `blobs/`. The next apply stores it
/// and sends none of it again. (Before the fix the agent asked to resume at
/// the blob's end, the controller had nothing to send, and every apply
/// failed with "content … was not received; apply again": seen when a
/// worker was killed mid-run.)
#[test]
fn a_blob_whose_transfer_was_whole_but_not_stored_is_stored_by_the_next_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 2);
    let hosts = tmp.path().join("hosts");
    // 256 KiB that zstd cannot shrink, so what was sent shows.
    let data = noise(256 * 1024);
    std::fs::create_dir_all(proj.join("layers/site/opt")).unwrap();
    std::fs::write(proj.join("layers/site/opt/big.bin"), &data).unwrap();
    let partial = hosts.join("s1/var/lib/drover/partial");
    std::fs::create_dir_all(&partial).unwrap();
    for d in [hosts.join("s1/var/lib/drover"), partial.clone()] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    std::fs::write(partial.join(blake3::hash(&data).to_hex().as_str()), &data).unwrap();

    let run = apply(&proj, &hosts, &["--sim-latency", "0", "--sim-failure-rate", "0"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(outcomes(&run).get("changed"), Some(&2), "{}", run.stdout);
    let sent = |h: &str| run.hosts().iter().find(|r| r["host"] == h).unwrap()["bytes_sent"].as_u64().unwrap();
    assert!(sent("s2") >= data.len() as u64, "s2 got the blob: {}", run.stdout);
    assert!(sent("s1") + data.len() as u64 <= sent("s2"), "s1 was not sent the blob again: {}", run.stdout);
    for h in ["s1", "s2"] {
        assert_eq!(std::fs::read(hosts.join(h).join("opt/big.bin")).unwrap(), data, "{h} has the file");
    }
    assert_eq!(std::fs::read_dir(&partial).unwrap().count(), 0, "nothing left in s1's partial/");
}

/// Every file and directory under `dir` with what a write would change:
/// size, modification and status-change times (a chmod, a rewrite with the
/// same bytes, a file created and removed again all show).
fn snapshot(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, (u64, i64, i64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()));
        }
    }
    out
}

/// What a `--simulate` run says its in-process agents used: (sessions, CPU
/// seconds), from its `simulated agents: N sessions used X s of CPU` line;
/// and the most CPU the run could have used at all (its wall-clock time on
/// every core of this machine, plus the figure's rounding).
fn agents_cpu(run: &Run, wall: std::time::Duration) -> (u64, f64, f64) {
    let line = run.stderr.lines().find_map(|l| l.strip_prefix("simulated agents: "));
    let line = line.unwrap_or_else(|| panic!("no `simulated agents:` line: {}", run.stderr));
    let figures =
        line.strip_suffix(" s of CPU (the hosts' own on a real fleet)").and_then(|l| l.split_once(" sessions used "));
    let (sessions, cpu) = figures.unwrap_or_else(|| panic!("not `N sessions used X s of CPU`: {line}"));
    let sessions = sessions.parse().unwrap_or_else(|e| panic!("sessions {sessions:?}: {e}"));
    let cpu: f64 = cpu.parse().unwrap_or_else(|e| panic!("CPU {cpu:?}: {e}"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (sessions, cpu, wall.as_secs_f64() * cores as f64 + 0.05)
}

/// A no-op over a fleet writes nothing on any host: not a file, not a
/// directory entry, not a mode (checked on every path of 50 roots), and the
/// run says how much CPU the in-process agents used, so a benchmark can
/// tell the hosts' share from the controller's: a session per host, and a
/// figure no larger than the run could have used (the first, changing run
/// used some).
#[test]
fn a_simulated_no_op_writes_nothing_on_any_host_and_reports_the_agents_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 50);
    let hosts = tmp.path().join("hosts");
    let ideal = ["--sim-latency", "0", "--sim-failure-rate", "0"];
    let start = std::time::Instant::now();
    let first = apply(&proj, &hosts, &ideal);
    let wall = start.elapsed();
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(outcomes(&first).get("changed"), Some(&50), "{}", first.stdout);
    let (sessions, cpu, most) = agents_cpu(&first, wall);
    assert!(sessions >= 50, "a session per host at least: {sessions}");
    assert!(cpu > 0.0 && cpu <= most, "{cpu} s of CPU in a run that could use {most} s");

    let before = snapshot(&hosts);
    let start = std::time::Instant::now();
    let noop = apply(&proj, &hosts, &ideal);
    let wall = start.elapsed();
    assert_eq!(noop.code, 0, "{}\n{}", noop.stdout, noop.stderr);
    assert_eq!(outcomes(&noop).get("unchanged"), Some(&50), "{}", noop.stdout);
    let after = snapshot(&hosts);
    let changed: Vec<_> = after.iter().filter(|(p, m)| before.get(*p) != Some(m)).map(|(p, _)| p).collect();
    let gone: Vec<_> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    assert!(changed.is_empty() && gone.is_empty(), "the no-op wrote {changed:?}, removed {gone:?}");
    assert!(before.len() > 50 * 10, "every host's tree was compared ({} paths)", before.len());

    let (sessions, cpu, most) = agents_cpu(&noop, wall);
    assert_eq!(sessions, 50, "one session per host: {}", noop.stderr);
    assert!((0.0..=most).contains(&cpu), "{cpu} s of CPU in a run that could use {most} s");
}

/// More hosts than transfer slots (`ship::TRANSFER_SLOTS`) each receive a
/// large file: the hosts queue for slots, each slot is freed by the agent's
/// answer to a ping once it has taken everything in, and every host ends
/// with the file byte for byte (and nothing left half-received).
#[test]
fn more_hosts_than_transfer_slots_all_receive_a_large_file_whole() {
    let n = drover::host::ship::TRANSFER_SLOTS * 2 + 3;
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), n);
    let hosts = tmp.path().join("hosts");
    let size = (drover::host::ship::LARGE_TRANSFER + (512 << 10)) as usize;
    let data = noise(size);
    std::fs::create_dir_all(proj.join("layers/site/opt")).unwrap();
    std::fs::write(proj.join("layers/site/opt/large.bin"), &data).unwrap();
    let run = apply(&proj, &hosts, &["--sim-latency", "5ms", "--sim-failure-rate", "0"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(outcomes(&run).get("changed"), Some(&n), "{}", run.stdout);
    for h in run.hosts() {
        let name = h["host"].as_str().unwrap();
        assert!(h["bytes_sent"].as_u64().unwrap() >= size as u64, "{name} was sent the file: {h:#}");
        assert!(std::fs::read(hosts.join(name).join("opt/large.bin")).unwrap() == data, "{name} has it whole");
        let partial = hosts.join(name).join("var/lib/drover/partial");
        assert_eq!(std::fs::read_dir(&partial).map_or(0, |d| d.count()), 0, "{name}: nothing half-received");
    }
}
