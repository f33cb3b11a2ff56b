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
