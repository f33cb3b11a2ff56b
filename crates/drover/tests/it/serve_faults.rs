//! `drover serve` under faults, checked through its HTTP API (no browser):
//! healing held off while a rollout holds the hosts, the last good snapshot
//! kept while drover.toml is broken, and a webhook that always fails given
//! up after five attempts without holding up the loop; its log written
//! to a file carries no colour codes.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::serve::{get_json, quick, simulated, Hooks, Server};
use crate::support::{wait_until, Fleet, DROVER};
use serde_json::Value;

/// Poll `f` every 200 ms until it gives `Some`, for at most `limit` seconds.
fn status(srv: &Server) -> Value {
    get_json(&srv.addr, "/api/status", &[])
}

fn host<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["hosts"].as_array().unwrap().iter().find(|h| h["host"] == name).unwrap_or_else(|| panic!("no {name}: {st:#}"))
}

fn problems(st: &Value) -> Vec<String> {
    st["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

#[test]
fn heal_waits_while_a_paused_rollout_holds_the_hosts_says_why_and_heals_once_it_ends() {
    let f = Fleet::new("sv-hold", 2);
    quick(&f, "\n[serve]\nreconcile = \"heal\"\n\n[rollout]\nbatch = 1\ndelay = \"2s\"\n");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let db = f.project().join(".drover/state.db");
    let store = drover_state::Store::open(&db).unwrap();

    // A real rollout, paused between its two batches.
    let mut rollout = f.spawn_drover(&["rollout", "start"]);
    let ro = wait_until("batch 1 done", Duration::from_secs(60), || {
        store.rollouts(1).unwrap().into_iter().next().filter(|r| r.next_batch == 1)
    });
    let p = f.drover(&["rollout", "pause"]);
    assert_eq!(p.code, 0, "{}\n{}", p.stdout, p.stderr);
    let plan: Value = serde_json::from_str(&ro.plan).unwrap();
    let held = plan["batches"][1][0].as_str().unwrap().to_string();
    let i = f.lab_hosts().iter().position(|h| h.name == held).unwrap();
    let motd = f.host_file(i, "/etc/motd");
    let want = std::fs::read_to_string(&motd).unwrap();
    std::fs::write(&motd, "edited by hand\n").unwrap();

    let srv = Server::start(&f, &["--reconcile", "1s"]);
    let why = format!("heal skipped: rollout {} is paused", ro.id);
    let st = wait_until("the pass to say why it does not heal", Duration::from_secs(60), || {
        let st = status(&srv);
        problems(&st).iter().any(|p| p.contains(&why)).then_some(st)
    });
    let h = host(&st, &held);
    assert_eq!(h["state"], "drifted", "{h:#}");
    assert_eq!(h["status"]["drift"], serde_json::json!(["/etc/motd"]), "{h:#}");
    // Several passes later, still held off.
    let pass = st["pass"].as_u64().unwrap();
    let st = wait_until("three more passes", Duration::from_secs(60), || {
        Some(status(&srv)).filter(|s| s["pass"].as_u64().unwrap() >= pass + 3)
    });
    assert!(problems(&st).iter().any(|p| p.contains(&why)), "{st:#}");
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "edited by hand\n", "a held host is not touched");
    let healed = |s: &drover_state::Store| {
        let runs = s.runs(100).unwrap();
        s.history(Some(held.as_str()), 50)
            .unwrap()
            .into_iter()
            .filter(|h| {
                h.outcome == drover_state::Outcome::Changed
                    && runs.iter().any(|r| r.id == h.run_id && r.command == "reconcile")
            })
            .count()
    };
    assert_eq!(healed(&store), 0);
    assert_eq!(store.rollouts(1).unwrap()[0].status, drover_state::RolloutStatus::Paused);

    // The rollout ends (aborted: its second batch stays untouched); the
    // next pass heals the host.
    let a = f.drover(&["rollout", "abort"]);
    assert_eq!(a.code, 0, "{}\n{}", a.stdout, a.stderr);
    wait_until("the rollout process to end", Duration::from_secs(30), || rollout.try_wait().unwrap());
    assert_eq!(store.rollouts(1).unwrap()[0].status, drover_state::RolloutStatus::Aborted);
    let st = wait_until("the held host healed", Duration::from_secs(60), || {
        Some(status(&srv)).filter(|s| host(s, &held)["state"] == "converged" && problems(s).is_empty())
    });
    assert_eq!(host(&st, &held)["status"]["drift"], serde_json::json!([]));
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), want, "the file itself is back");
    assert_eq!(healed(&store), 1, "one recorded reconcile run healed it");
}

#[test]
fn a_broken_drover_toml_keeps_the_last_snapshot_served_with_the_error_and_the_next_good_load_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 2);
    let srv = Server::start_in(&proj, &["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"]);
    let good = wait_until("a first pass", Duration::from_secs(60), || {
        Some(status(&srv)).filter(|s| s["pass"].as_u64().unwrap() >= 1)
    });
    assert!(problems(&good).is_empty(), "{good:#}");
    let states = |s: &Value| -> Vec<(String, String)> {
        s["hosts"].as_array().unwrap().iter().map(|h| (h["host"].to_string(), h["state"].to_string())).collect()
    };
    assert_eq!(states(&good).len(), 2);

    let toml = proj.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let line = text.lines().count() + 2;
    std::fs::write(&toml, format!("{text}\n[apply\n")).unwrap();
    let broken = wait_until("the load error shown", Duration::from_secs(30), || {
        Some(status(&srv)).filter(|s| problems(s).iter().any(|p| p.starts_with("project:")))
    });
    let p = problems(&broken).join("\n");
    assert!(p.contains(&format!("drover.toml:{line}")), "names the file and line: {p}");
    // The hosts as last seen, still served; passes go on.
    assert_eq!(states(&broken), states(&good));
    assert_eq!(broken["at_ms"], good["at_ms"], "the data is from the last good pass");
    let pass = broken["pass"].as_u64().unwrap();
    let later = wait_until("two more passes", Duration::from_secs(30), || {
        Some(status(&srv)).filter(|s| s["pass"].as_u64().unwrap() >= pass + 2)
    });
    assert_eq!(states(&later), states(&good));
    assert!(problems(&later).iter().any(|p| p.contains(&format!("drover.toml:{line}"))), "{later:#}");
    let (code, metrics) = crate::support::serve::http(&srv.addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    for h in ["s1", "s2"] {
        assert!(metrics.contains(&format!("host=\"{h}\"")), "{h} in /metrics: {metrics}");
    }

    std::fs::write(&toml, text).unwrap();
    let back = wait_until("a good pass again", Duration::from_secs(30), || {
        Some(status(&srv)).filter(|s| problems(s).is_empty() && s["at_ms"].as_i64() > good["at_ms"].as_i64())
    });
    assert_eq!(states(&back), states(&good));
}

#[test]
fn a_webhook_that_always_fails_gets_five_attempts_with_backoff_then_is_shown_undelivered_and_passes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 1);
    let hooks = Hooks::start();
    let toml = proj.join("drover.toml");
    // Drift, not ill health: a simulated host's fake supervisor answers
    // its HTTP probe as healthy, and a file edited by hand stays drifted
    // (no heal) for the whole test.
    let rule = format!("\n[[alert]]\nname = \"sick\"\non = \"drifted\"\nwebhook = \"http://{}/fail\"\n", hooks.addr);
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap() + &rule).unwrap();
    std::fs::write(hosts.join("s1/etc/motd"), "edited by hand\n").unwrap();
    let srv = Server::start_in(&proj, &["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"]);

    let first = wait_until("the first attempt", Duration::from_secs(60), || hooks.times("/fail").first().copied());
    let pass_at_first = status(&srv)["pass"].as_u64().unwrap();
    let st = wait_until("the message listed as undelivered", Duration::from_secs(40), || {
        Some(status(&srv)).filter(|s| !s["undelivered"].as_array().unwrap().is_empty())
    });
    let times = hooks.times("/fail");
    assert_eq!(times.len(), 5, "exactly five attempts");
    // Backoff: 1, 2, 4, 8 s between attempts.
    for (k, w) in times.windows(2).enumerate() {
        let gap = w[1] - w[0];
        let want = Duration::from_secs(1 << k);
        assert!(gap >= want.mul_f64(0.9) && gap < want * 2 + Duration::from_secs(2), "gap {k}: {gap:?}, want {want:?}");
    }
    for m in hooks.at("/fail") {
        assert_eq!(
            (m["alert"].as_str(), m["status"].as_str(), m["subject"].as_str()),
            (Some("sick"), Some("firing"), Some("s1"))
        );
    }
    let u = &st["undelivered"][0];
    assert_eq!(
        (u["alert"].as_str(), u["status"].as_str(), u["subject"].as_str()),
        (Some("sick"), Some("firing"), Some("s1"))
    );
    assert_eq!(u["attempts"], 5);
    assert_eq!(u["error"], "HTTP 500 Internal Server Error", "{u}");
    assert_eq!(u["webhook"], format!("http://{}/fail", hooks.addr));
    let banner = problems(&st).join("\n");
    assert!(banner.contains("alert sick (firing s1) not delivered") && banner.contains("after 5 attempts"), "{banner}");
    // The loop went on meanwhile: about 15 s of retries, a pass a second.
    let passes = st["pass"].as_u64().unwrap() - pass_at_first;
    assert!(passes >= 5, "only {passes} passes in {:?} of retries", first.elapsed());
    // Given up means given up (the next attempt would have been 16 s later),
    // and deduplicated: the condition still holds, no new firing.
    std::thread::sleep(Duration::from_secs(17));
    assert_eq!(hooks.times("/fail").len(), 5);
    assert_eq!(status(&srv)["undelivered"].as_array().unwrap().len(), 1);
}

#[test]
fn open_alerts_survive_a_restart_not_fired_again_and_resolved_by_the_next_server() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 1);
    let hooks = Hooks::start();
    let toml = proj.join("drover.toml");
    let rule = format!("\n[[alert]]\nname = \"edited\"\non = \"drifted\"\nwebhook = \"http://{}/ok\"\n", hooks.addr);
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap() + &rule).unwrap();
    let motd = hosts.join("s1/etc/motd");
    let want = std::fs::read_to_string(&motd).unwrap();
    std::fs::write(&motd, "edited by hand\n").unwrap();
    let args = ["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"];

    let srv = Server::start_in(&proj, &args);
    wait_until("the firing message", Duration::from_secs(60), || (hooks.at("/ok").len() == 1).then_some(()));
    // A pass after the one that fired (which saved it), then the server dies.
    let pass = status(&srv)["pass"].as_u64().unwrap();
    wait_until("one more pass", Duration::from_secs(30), || {
        (status(&srv)["pass"].as_u64().unwrap() > pass).then_some(())
    });
    drop(srv);
    let store = drover_state::Store::open(&proj.join(".drover/state.db")).unwrap();
    let open = store.open_alerts().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!((open[0].rule.as_str(), open[0].subject.as_str(), open[0].fired), ("edited", "s1", true));

    let srv = Server::start_in(&proj, &args);
    wait_until("three passes of the new server", Duration::from_secs(60), || {
        (status(&srv)["pass"].as_u64().unwrap() >= 3).then_some(())
    });
    assert_eq!(hooks.at("/ok").len(), 1, "not fired again: {:?}", hooks.at("/ok"));
    std::fs::write(&motd, want).unwrap();
    wait_until("the resolve message", Duration::from_secs(60), || (hooks.at("/ok").len() == 2).then_some(()));
    let m = &hooks.at("/ok")[1];
    assert_eq!(
        (m["alert"].as_str(), m["status"].as_str(), m["subject"].as_str()),
        (Some("edited"), Some("resolved"), Some("s1"))
    );
    let pass = status(&srv)["pass"].as_u64().unwrap();
    wait_until("one more pass", Duration::from_secs(30), || {
        (status(&srv)["pass"].as_u64().unwrap() > pass).then_some(())
    });
    assert_eq!(store.open_alerts().unwrap(), vec![], "nothing left open");
}

/// `drover serve 2>>serve.log`: the log is plain text (the warning that
/// the project does not load, here), with no terminal colour codes.
#[test]
fn serve_writes_its_log_to_a_file_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 1);
    let log = dir.path().join("serve.log");
    let mut child = Command::new(DROVER)
        .arg("-C")
        .arg(&proj)
        .args(["serve", "--listen", "127.0.0.1:0", "--check-every", "1s", "--simulate"])
        .arg(&hosts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    let toml = proj.join("drover.toml");
    std::fs::write(&toml, std::fs::read_to_string(&toml).unwrap() + "\n[apply\n").unwrap();
    let text = wait_until("the warning in the log file", Duration::from_secs(30), || {
        Some(std::fs::read_to_string(&log).unwrap()).filter(|t| t.contains("check pass: project:"))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("WARN"), "{text}");
    assert!(!text.contains('\x1b'), "no escape codes in a log file: {text:?}");
}
