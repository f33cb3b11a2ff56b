//! `drover serve`'s alerts end to end: `[[alert]]` webhooks fired by a
//! host taken down on a lab fleet, received by a real listener (generic
//! JSON and Slack payloads, a failing endpoint retried, a hanging one never
//! blocking), resolved when the host returns; malformed rules refused.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::serve::{get_json, quick, Hooks, Server};
use crate::support::{Fleet, DROVER};

#[test]
fn a_downed_host_fires_each_webhook_once_retries_a_failing_one_and_resolves_when_it_returns() {
    let f = Fleet::new("sv-alert", 2);
    let hooks = Hooks::start();
    let rule = |name: &str, path: &str, format: &str| {
        format!("\n[[alert]]\nname = \"{name}\"\non = \"unreachable\"\nwebhook = \"http://{}{path}\"\nformat = \"{format}\"\n", hooks.addr)
    };
    quick(
        &f,
        &format!(
            "{}{}{}",
            rule("down", "/flaky", "json"),
            rule("down-slack", "/slack", "slack"),
            rule("down-hang", "/hang", "json")
        ),
    );
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let srv = Server::start(&f, &["--check-every", "1s"]);
    let wait = |what: &str, limit: u64, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(limit),
                "timed out waiting for {what}: {:#?}",
                hooks.got.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("a first pass", 30, &|| get_json(&srv.addr, "/api/status", &[])["pass"].as_u64().unwrap_or(0) >= 1);
    assert!(hooks.got.lock().unwrap().is_empty(), "nothing fires while all is well");
    assert_eq!(f.lab(&["fault", "h2", "down"]).code, 0);
    // The failing endpoint gets the message again after its 500.
    wait("the retried firing", 60, &|| hooks.at("/flaky").len() >= 2);
    let flaky = hooks.at("/flaky");
    for m in &flaky[..2] {
        assert_eq!(
            (m["alert"].as_str(), m["status"].as_str(), m["subject"].as_str()),
            (Some("down"), Some("firing"), Some("h2")),
            "{m}"
        );
        assert_eq!(m["on"], "unreachable");
        assert!(!m["detail"].as_str().unwrap_or("").is_empty(), "{m}");
    }
    let slack = hooks.at("/slack");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let text = slack[0]["text"].as_str().unwrap();
    assert!(text.contains("down-slack firing: h2 (unreachable)"), "{text}");
    // The hanging endpoint holds a request open; the server goes on.
    assert_eq!(hooks.at("/hang").len(), 1);
    let pass = get_json(&srv.addr, "/api/status", &[])["pass"].as_u64().unwrap();
    let t = Instant::now();
    wait("three more passes", 60, &|| get_json(&srv.addr, "/api/status", &[])["pass"].as_u64().unwrap() >= pass + 3);
    eprintln!("three passes with a hanging webhook took {:?}", t.elapsed());
    assert_eq!(hooks.at("/slack").len(), 1, "deduplicated: still one firing message");
    assert_eq!(hooks.at("/flaky").len(), 2);

    assert_eq!(f.lab(&["heal", "h2"]).code, 0);
    wait("the resolve messages", 60, &|| hooks.at("/slack").len() >= 2 && hooks.at("/flaky").len() >= 3);
    let last = hooks.at("/flaky")[2].clone();
    assert_eq!((last["status"].as_str(), last["subject"].as_str()), (Some("resolved"), Some("h2")), "{last}");
    assert!(hooks.at("/slack")[1]["text"].as_str().unwrap().contains("down-slack resolved: h2"));
    assert!(hooks.at("/flaky").iter().all(|m| m["subject"] == "h2"), "h1 never alerted");
}

/// Malformed `[[alert]]` rules are refused when the project loads (so at
/// `drover serve`'s start), naming drover.toml's line and the fix.
#[test]
fn malformed_alert_rules_are_refused_at_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("p");
    crate::support::init_project(&proj);
    let base = std::fs::read_to_string(proj.join("drover.toml")).unwrap();
    let line = base.lines().count() + 3;
    for (rule, want) in [
        (
            "on = \"down\"\nwebhook = \"http://x.example/h\"\n",
            format!("drover.toml:{line}: unknown alert condition `down`"),
        ),
        (
            "on = \"drifted\"\nwebhook = \"ftp://x.example/h\"\n",
            format!("drover.toml:{}: webhook `ftp://x.example/h` is not an http(s) URL", line + 1),
        ),
        ("on = \"drifted\"\nfor = \"soon\"\nwebhook = \"http://x.example/h\"\n", format!("drover.toml:{}:", line + 1)),
        (
            "on = \"drifted\"\nformat = \"teams\"\nwebhook = \"http://x.example/h\"\n",
            format!("drover.toml:{}: unknown webhook format `teams`", line + 1),
        ),
        ("on = \"drifted\"\nwebhok = \"http://x.example/h\"\n", "drover.toml".to_string()),
    ] {
        std::fs::write(proj.join("drover.toml"), format!("{base}\n[[alert]]\n{rule}")).unwrap();
        let out =
            Command::new(DROVER).arg("-C").arg(&proj).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{rule}: {err}");
        assert!(err.contains(&want), "{rule}: want {want:?} in:\n{err}");
    }
}

/// Drift on two simulated hosts fires and resolves five times, faster than
/// a delivery retry (the `/flaky` endpoint fails its first request, so one
/// firing waits a second for its retry while its resolve is due). Per
/// subject the receiver gets strictly increasing sequence numbers, each
/// `resolved` after its `firing`, times on every message (Slack's text
/// too), and its open set (s1 drifted again at the end) ends equal to the
/// server's (`/api/alerts`).
#[test]
fn drift_alerts_arrive_in_order_per_subject_with_seq_and_time_and_end_as_serve_has_them() {
    use crate::support::serve::simulated;
    let dir = tempfile::tempdir().unwrap();
    let (proj, hosts) = simulated(dir.path(), 2);
    let hooks = Hooks::start();
    let toml = proj.join("drover.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    let rule = |name: &str, path: &str, format: &str| {
        format!(
            "\n[[alert]]\nname = \"{name}\"\non = \"drifted\"\nwebhook = \"http://{}{path}\"\nformat = \"{format}\"\n",
            hooks.addr
        )
    };
    std::fs::write(&toml, format!("{t}{}{}", rule("drift", "/flaky", "json"), rule("drift-slack", "/slack", "slack")))
        .unwrap();
    let srv = Server::start_in(&proj, &["--simulate", hosts.to_str().unwrap(), "--check-every", "1s"]);
    let status = || get_json(&srv.addr, "/api/status", &[]);
    crate::support::wait_until("a first pass", Duration::from_secs(60), || {
        (status()["pass"].as_u64() >= Some(1)).then_some(())
    });
    let motd = |h: &str| hosts.join(h).join("etc/motd");
    let want = std::fs::read_to_string(motd("s1")).unwrap();
    let pass = || status()["pass"].as_u64().unwrap();
    for round in 0..5 {
        let p = pass();
        for h in ["s1", "s2"] {
            std::fs::write(motd(h), format!("edited {round}\n")).unwrap();
        }
        // Seen drifted by one pass (the alert fires), then restored.
        crate::support::wait_until("a pass seeing the drift", Duration::from_secs(30), || {
            (pass() >= p + 2).then_some(())
        });
        for h in ["s1", "s2"] {
            std::fs::write(motd(h), &want).unwrap();
        }
        let p = pass();
        crate::support::wait_until("a pass seeing it fixed", Duration::from_secs(30), || {
            (pass() >= p + 2).then_some(())
        });
    }
    // It ends with s1 drifted: one alert open on both sides.
    std::fs::write(motd("s1"), "edited at the end\n").unwrap();
    let p = pass();
    crate::support::wait_until("a pass seeing the last drift", Duration::from_secs(30), || {
        (pass() >= p + 2).then_some(())
    });
    // Everything delivered (retries included), then compared.
    std::thread::sleep(Duration::from_secs(4));
    let got = hooks.at("/flaky");
    assert!(got.len() >= 2 * 2 * 5, "five rounds of firing and resolved for two hosts: {got:#?}");
    let mut open = std::collections::BTreeSet::new();
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut firing: std::collections::HashMap<String, bool> = Default::default();
    let mut seen_seqs = std::collections::HashSet::new();
    for m in &got {
        let subject = m["subject"].as_str().unwrap().to_string();
        let seq = m["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {m}"));
        assert!(m["at_ms"].as_i64().is_some() && m["at"].as_str().is_some_and(|a| a.ends_with(" UTC")), "{m}");
        // A retry resends the same message (the same seq): counted once.
        if !seen_seqs.insert((subject.clone(), seq)) {
            continue;
        }
        assert!(last.get(&subject).is_none_or(|&p| seq > p), "seq not increasing for {subject}: {got:#?}");
        last.insert(subject.clone(), seq);
        let on = firing.entry(subject.clone()).or_default();
        match m["status"].as_str().unwrap() {
            "firing" => {
                assert!(!*on, "fired twice without a resolve: {got:#?}");
                *on = true;
                open.insert(("drift".to_string(), subject));
            }
            "resolved" => {
                assert!(*on, "resolved before firing for {subject}: {got:#?}");
                *on = false;
                open.remove(&("drift".to_string(), subject));
            }
            s => panic!("status {s}"),
        }
    }
    let server_open: std::collections::BTreeSet<(String, String)> = get_json(&srv.addr, "/api/alerts", &[])["open"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["fired"] == true)
        .map(|a| (a["alert"].as_str().unwrap().to_string(), a["subject"].as_str().unwrap().to_string()))
        .collect();
    let server_json: std::collections::BTreeSet<_> =
        server_open.iter().filter(|(a, _)| a == "drift").cloned().collect();
    assert_eq!(open, server_json, "the receiver's open alerts are the server's");
    assert_eq!(open.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), ["s1"]);
    let slack = hooks.at("/slack");
    assert!(slack.len() >= 2 * 2 * 5, "{slack:#?}");
    for m in &slack {
        let text = m["text"].as_str().unwrap();
        assert!(text.contains(" UTC · #"), "Slack shows the time and seq: {text}");
    }
}
