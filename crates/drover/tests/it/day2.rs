//! Rolling upgrades and day-2 operations against real lab hosts: batches
//! behind health gates, a failing batch stopped and reverted with later
//! batches untouched, hooks in order, a killed controller resumed, drain,
//! drift in status, logs and exec across hosts. Drain, status and logs
//! (runit's svlogd file, systemd's journal) run on both inits.
//!
//! The suite runs on both state backends: `scripts/test` runs it a second
//! time with `DROVER_TEST_STATE=postgres`, which gives each fleet its own
//! database on a throwaway PostgreSQL server (`support::Fleet`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Fleet, Run};
use drover_lab::Init;

/// The quickstart with a rollout policy, hooks that log with timestamps, a
/// health check that a test can break per host, and a service that logs.
fn rollout_fleet(name: &str, n: usize, extra_policy: &str) -> Fleet {
    setup_rollout(Fleet::new(name, n), extra_policy)
}

/// The same on hosts whose pid 1 is `init`.
fn rollout_fleet_on(name: &str, n: usize, extra_policy: &str, init: Init) -> Fleet {
    setup_rollout(Fleet::on(name, n, init), extra_policy)
}

fn setup_rollout(f: Fleet, extra_policy: &str) -> Fleet {
    let p = f.project();
    fs::write(
        p.join("services/web.toml"),
        "command = \"echo hello from $(hostname); exec busybox httpd -f -p 8080 -h /srv/site\"\nrestart-on = [\"/srv/site/**\"]\n[health]\ncommand = \"test ! -e /etc/unhealthy\"\nretries = 2\ninterval = \"100ms\"\n",
    )
    .unwrap();
    let log = |what: &str| format!("echo $(date +%s%N) {what} $(hostname) >> /var/tmp/hooks.log");
    fs::write(
        p.join("roles/site.toml"),
        format!(
            "layers = [\"site\"]\nservices = [\"web\"]\n[vars]\ngreeting = \"hi\"\n\n[rollout]\n{extra_policy}\n[rollout.hooks]\nbefore = {{ host = \"h1\", command = \"{}\" }}\nafter = {{ host = \"h1\", command = \"{}\" }}\nbefore-host = \"{}\"\nafter-host = \"{}\"\n",
            log("rollout-before"),
            log("rollout-after"),
            log("host-before"),
            log("host-after")
        ),
    )
    .unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    f
}

fn generation(f: &Fleet, i: usize) -> u64 {
    let s = fs::read_to_string(f.host_file(i, "/var/lib/drover/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    v["current"].as_u64().unwrap_or(0)
}

fn bump_template(f: &Fleet, tag: &str) {
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, format!("{tag} {{{{ host.name }}}} {{{{ generation }}}}\n")).unwrap();
}

/// Hook log lines from every host, in time order.
fn hook_log(f: &Fleet, n: usize) -> Vec<String> {
    let mut lines: Vec<(u128, String)> = (0..n)
        .flat_map(|i| {
            fs::read_to_string(f.host_file(i, "/var/tmp/hooks.log"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| {
            let (ts, rest) = l.split_once(' ')?;
            Some((ts.parse().ok()?, rest.to_string()))
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, l)| l).collect()
}

#[test]
fn rolling_upgrade_in_batches_with_hooks_then_a_failing_batch_is_stopped_and_reverted() {
    let f = rollout_fleet("d2-rollout", 6, "batch = 2\n");
    bump_template(&f, "v2");
    let r = f.drover(&["rollout", "start", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["batches"].as_array().unwrap().len(), 3);
    assert_eq!(v["batches"][1]["hosts"], serde_json::json!(["h3", "h4"]));
    for i in 0..6 {
        assert_eq!(generation(&f, i), 2, "h{}", i + 1);
    }
    // Hooks ran in order: rollout-before, then each batch's hosts before and
    // after, batch by batch, then rollout-after.
    let log = hook_log(&f, 6);
    let expect = [
        "rollout-before h1",
        "host-before h1",
        "host-before h2",
        "host-after h1",
        "host-after h2",
        "host-before h3",
        "host-before h4",
        "host-after h3",
        "host-after h4",
        "host-before h5",
        "host-before h6",
        "host-after h5",
        "host-after h6",
        "rollout-after h1",
    ];
    let mut sorted_pairs: Vec<String> = log.clone();
    // Within a batch, the two hosts' hooks run one after the other, in host order.
    assert_eq!(sorted_pairs.len(), expect.len(), "{log:#?}");
    sorted_pairs.truncate(expect.len());
    assert_eq!(sorted_pairs, expect, "hooks out of order");

    // Batch 2 fails: h3 is unhealthy. Batch 1 is upgraded, batch 2 reverted,
    // batch 3 untouched.
    fs::write(f.host_file(2, "/etc/unhealthy"), "").unwrap();
    bump_template(&f, "v3");
    let r = f.drover(&["rollout", "start", "--json"]);
    assert_eq!(r.code, 2, "a failed rollout must fail the command: {}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    let batches = v["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "batch 3 must not be attempted");
    assert_eq!(batches[1]["outcome"], "failed");
    assert!(batches[1]["reason"].as_str().unwrap().contains("h3"), "{}", batches[1]);
    assert_eq!((generation(&f, 0), generation(&f, 1)), (3, 3), "batch 1 upgraded");
    assert_eq!(generation(&f, 2), 2, "h3 rolled back by its agent");
    assert_eq!(generation(&f, 3), 2, "h4 reverted by the rollout");
    assert_eq!(batches[1]["reverted"][0]["host"], "h4");
    assert_eq!((generation(&f, 4), generation(&f, 5)), (2, 2), "batch 3 untouched");
    assert!(fs::read_to_string(f.host_file(4, "/srv/site/index.html")).unwrap().starts_with("v2 "));
    // The maintenance-style after hook did not run on failure.
    assert_eq!(hook_log(&f, 6).iter().filter(|l| l.starts_with("rollout-after")).count(), 1);
}

#[test]
fn a_killed_controller_is_resumed_from_the_state_store() {
    let f = rollout_fleet("d2-resume", 6, "batch = 2\ndelay = \"4s\"\n");
    bump_template(&f, "v2");
    let mut child = f.spawn_drover(&["rollout", "start"]);
    let start = Instant::now();
    // Until the store records batch 1 as done; the controller is then in
    // the delay before batch 2.
    loop {
        assert!(start.elapsed() < Duration::from_secs(60), "batch 1 never finished");
        let st = f.drover(&["rollout", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_default();
        if v[0]["next_batch"].as_u64() == Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL the controller
    child.wait().unwrap();
    assert_eq!(generation(&f, 2), 1, "batch 2 must not have started");
    f.wait_for_dead_controllers_leases();
    let st = f.drover(&["rollout", "status", "--json"]);
    assert!(st.stdout.contains("\"running\""), "{}", st.stdout);
    let r = f.drover(&["rollout", "resume", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["batches"][0]["index"], 1, "resume must start at batch 2: {}", r.stdout);
    for i in 0..6 {
        assert_eq!(generation(&f, i), 2, "h{}", i + 1);
    }
    // Nothing left to resume.
    assert_ne!(f.drover(&["rollout", "resume"]).code, 0);
}

#[test]
fn pause_holds_the_rollout_between_batches_and_resume_continues() {
    let f = rollout_fleet("d2-pause", 4, "batch = 2\ndelay = \"2s\"\n");
    bump_template(&f, "v2");
    let child = f.spawn_drover(&["rollout", "start"]);
    let start = Instant::now();
    while generation(&f, 0) != 2 {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.drover(&["rollout", "pause"]).code, 0);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(generation(&f, 2), 1, "a paused rollout went on");
    assert_eq!(f.drover(&["rollout", "resume"]).code, 0);
    let out = Run::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(generation(&f, 3), 2);
}

on_both_inits!(
    drain_status_drift_logs_and_exec_on_several_hosts:
    drain_status_drift_logs_and_exec_on_several_hosts_runit,
    drain_status_drift_logs_and_exec_on_several_hosts_systemd
);

fn drain_status_drift_logs_and_exec_on_several_hosts(init: Init) {
    let f = rollout_fleet_on("d2-ops", 3, "batch = 2\n", init);
    // exec: grouped output, exit codes summarised.
    let r = f.drover(&["exec", "all", "--", "hostname"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in ["h1", "h2", "h3"] {
        assert!(r.stdout.contains(&format!("=== {h} (exit 0)\n{h}\n")), "{}", r.stdout);
    }
    assert!(r.stderr.contains("3 hosts: exit 0: 3"), "{}", r.stderr);
    // Several arguments are an argv, quoted for the host's shell (#24 item 5).
    let r = f.drover(&["exec", "h1", "--", "sh", "-c", "echo a b; echo 'c;d'"]);
    assert!(r.stdout.contains("=== h1 (exit 0)\na b\nc;d\n"), "{}", r.stdout);
    let r = f.drover(&["exec", "h1,h2", "--", "test $(hostname) = h1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("exit 0: 1 (h1)") && r.stderr.contains("exit 1: 1 (h2)"), "{}", r.stderr);

    // logs: every host's line, prefixed by host and timestamp.
    let r = f.drover(&["logs", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // (systemd's journal also has the unit's "Started …" lines.)
    for h in ["h1", "h2", "h3"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{h}  ")) && l.contains("hello from"))
            .unwrap_or_else(|| panic!("{}", r.stdout));
        assert!(line.ends_with(&format!("Z  hello from {h}")), "{line}");
    }
    // runit's svlogd file, or (systemd) the journal and no file at all.
    assert_eq!(f.host_file(0, "/var/log/drover/web/current").exists(), init == Init::Runit);

    // status: drift after a hand edit.
    fs::write(f.host_file(1, "/etc/motd"), "edited by hand\n").unwrap();
    let r = f.drover(&["status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[1]["drift"], serde_json::json!(["/etc/motd"]));
    assert_eq!(v[0]["drift"], serde_json::json!([]));
    assert_eq!(v[0]["services"][0]["state"], f.running_state());
    assert_eq!(v[0]["services"][0]["healthy"], true);

    // drain: services stop, applies skip the host, undrain brings them back.
    let r = f.drover(&["drain", "h3", "--reason", "disk swap"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = f.drover(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v[2]["drained"], "disk swap");
    assert_eq!(v[2]["services"][0]["state"], f.stopped_state());
    assert!(f.service_pid(2, "web").is_empty(), "a drained host's service must not run");
    bump_template(&f, "v2");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("skipping h3: drained"), "{}", r.stderr);
    assert_eq!(r.hosts().len(), 2);
    assert_eq!(f.drover(&["undrain", "h3"]).code, 0);
    let st = f.drover(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v[2]["drained"], serde_json::Value::Null);
    assert_eq!(v[2]["services"][0]["state"], f.running_state());
    assert!(!f.service_pid(2, "web").is_empty(), "undrain must start the service again");

    // history records every run per host.
    let r = f.drover(&["history", "h3", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(!v.as_array().unwrap().is_empty());
}

#[test]
fn a_second_apply_on_the_same_hosts_is_refused_while_the_first_runs() {
    let f = rollout_fleet("d2-lock", 2, "delay = \"3s\"\nbatch = 1\n");
    bump_template(&f, "v2");
    let mut child = f.spawn_drover(&["rollout", "start"]);
    let start = Instant::now();
    while generation(&f, 0) != 2 {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = f.drover(&["apply"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("another drover") && r.stderr.contains("rollout"), "{}", r.stderr);
    let out = child.wait().unwrap();
    assert!(out.success());
}

/// The agent sessions (`drover-agent serve`) running on host `i`.
fn agent_sessions(f: &Fleet, i: usize) -> usize {
    let out = std::process::Command::new("ip").args(["netns", "pids", &f.lab_hosts()[i].netns]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains("serve")
        })
        .count()
}

/// Sessions that take no host lock (`logs -f`, `exec`) never hold up an
/// apply, and end once their controller is gone: the follower within its
/// heartbeat, the exec once its command is over.
#[test]
fn read_only_sessions_never_block_an_apply_and_end_with_their_controller() {
    let f = rollout_fleet("d2-readonly", 1, "batch = 1\n");
    // A follower whose controller is killed, and a long exec still running.
    let mut follow = f.spawn_drover(&["logs", "web", "-f"]);
    let exec_started = Instant::now();
    let mut exec = f.spawn_drover(&["exec", "all", "--", "sleep 30"]);
    std::thread::sleep(Duration::from_secs(2));
    follow.kill().unwrap();
    follow.wait().unwrap();
    bump_template(&f, "v2");
    let start = Instant::now();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(start.elapsed() < Duration::from_secs(20), "apply waited {:?} for read-only sessions", start.elapsed());
    // The orphaned follower notices within its heartbeat and exits.
    let start = Instant::now();
    loop {
        let sessions = agent_sessions(&f, 0);
        // Only the exec session's agent may remain.
        if sessions <= 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{sessions} agent sessions still running");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The exec's controller is killed too: its session ends once the
    // command is over (30 s after it began), plus the same heartbeat.
    exec.kill().unwrap();
    exec.wait().unwrap();
    let deadline = exec_started + Duration::from_secs(30 + 15);
    loop {
        let sessions = agent_sessions(&f, 0);
        if sessions == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{sessions} agent sessions outlived their controllers");
        std::thread::sleep(Duration::from_millis(200));
    }
}

on_both_inits!(
    logs_follow_streams_new_lines_as_they_are_written:
    logs_follow_streams_new_lines_as_they_are_written_runit,
    logs_follow_streams_new_lines_as_they_are_written_systemd
);

/// `drover logs web -f` streams a service's lines as they are written (from
/// svlogd's file, or from the journal): the lines already there, then a
/// restart's new ones, each exactly once.
fn logs_follow_streams_new_lines_as_they_are_written(init: Init) {
    let f = Fleet::on("d2-follow", 1, init);
    let svc = f.project().join("services/web.toml");
    let text = fs::read_to_string(&svc).unwrap();
    let logging = "command = \"echo hello from $(hostname); exec busybox httpd -f -p 8080 -h /srv/site\"";
    fs::write(&svc, text.replace("command = \"busybox httpd -f -p 8080 -h /srv/site\"", logging)).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let mut child = f.spawn_drover(&["logs", "web", "-f"]);
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let hello = |want: usize, rx: &mpsc::Receiver<String>, seen: &mut Vec<String>| {
        let start = Instant::now();
        while seen.iter().filter(|l| l.contains("hello from h1")).count() < want {
            assert!(start.elapsed() < Duration::from_secs(30), "wanted {want} hello lines, got {seen:#?}");
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push(l);
            }
        }
    };
    let mut seen = Vec::new();
    hello(1, &rx, &mut seen);
    assert!(seen[0].starts_with("h1  ") && seen.iter().any(|l| l.contains("Z  hello from h1")), "{seen:#?}");
    let restart = match init {
        Init::Runit => "SVDIR=/etc/service sv restart web >/dev/null && echo restarted",
        Init::Systemd => "systemctl restart web && echo restarted",
        Init::OpenRc => "rc-service web restart >/dev/null 2>&1 && echo restarted",
    };
    assert_eq!(f.host_sh(0, restart), "restarted");
    hello(2, &rx, &mut seen);
    std::thread::sleep(Duration::from_secs(1));
    seen.extend(rx.try_iter());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen.iter().filter(|l| l.contains("hello from h1")).count(), 2, "a line came twice: {seen:#?}");
}
