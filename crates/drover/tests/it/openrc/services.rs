//! Services on an OpenRC host, from the first apply to a change that
//! breaks SSH.

use std::fs;
use std::time::{Duration, Instant};

use drover_lab::Init;

use super::{assert_openrc_host, host_status};
use crate::support::{curl, Fleet};

/// A service that records each SIGHUP (its reload) in `/var/tmp/rl-reloads`.
const RELOADER: &str = r#"command = "trap 'echo hup >> /var/tmp/rl-reloads' HUP; while :; do sleep 1 & wait $!; done"
restart-on = ["/srv/rl/**"]
reload-on = ["/etc/rl/**"]
"#;

/// Binds the port web already holds: dies at once, every time
/// supervise-daemon starts it again.
const SQUATTER: &str = "import socket\nprint('api: starting on :8080')\ns = socket.socket()\ns.bind(('0.0.0.0', 8080))\ns.listen()\nwhile True:\n    s.accept()[0].close()\n";

/// Every service scenario on one OpenRC host:
/// - apply installs the generated `/etc/init.d` scripts, adds them to the
///   `default` runlevel and starts them; `status` reports web `running` with
///   supervise-daemon's child as its pid, healthy; a second apply is a no-op;
/// - a template change restarts web (a new pid), an unrelated file restarts
///   nothing, a `reload-on` change reloads `rl` (SIGHUP through
///   supervise-daemon, same pid);
/// - `drover logs` has what web printed, once per start, from its file;
/// - a crash-looping service fails its gate while its probe reaches web:
///   rolled back, exit 2, the reason with the supervisor's state and the
///   service's log lines; its script and runlevel link are gone;
/// - drain stops the services (and takes them out of the runlevel, so a
///   reboot does not start them), apply skips the host, undrain starts them;
/// - a change that locks the controller out (root's authorized_keys)
///   reverts itself, and the host is reachable on the old generation.
#[test]
fn openrc_host_applies_restarts_reloads_logs_gates_drains_and_reverts_a_lockout() {
    let f = Fleet::on("orc-svc", 1, Init::OpenRc);
    assert_openrc_host(&f, 0);
    let p = f.project();
    let svc = p.join("services/web.toml");
    let text = fs::read_to_string(&svc).unwrap();
    let logging = "command = \"echo hello from $(hostname); exec busybox httpd -f -p 8080 -h /srv/site\"";
    fs::write(&svc, text.replace("command = \"busybox httpd -f -p 8080 -h /srv/site\"", logging)).unwrap();
    fs::write(p.join("services/rl.toml"), RELOADER).unwrap();
    let role = p.join("roles/site.toml");
    let site = fs::read_to_string(&role).unwrap();
    fs::write(&role, site.replace("services = [\"web\"]", "services = [\"web\", \"rl\"]")).unwrap();
    let layer = p.join("layers/site");
    fs::create_dir_all(layer.join("etc/rl")).unwrap();
    fs::create_dir_all(layer.join("srv/rl")).unwrap();
    fs::write(layer.join("etc/rl/conf"), "1\n").unwrap();
    fs::write(layer.join("srv/rl/bin"), "1\n").unwrap();

    // Apply: scripts, runlevel, running, healthy.
    let h = &f.apply_ok()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    let mut restarts: Vec<&str> = h["restarts"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    restarts.sort_unstable();
    assert_eq!(restarts, ["rl", "web"], "{h}");
    let page = curl(&format!("http://{}:8080/", f.lab_hosts()[0].address));
    assert!(page.contains("host: h1") && page.contains("generation: 1"), "{page}");
    for s in ["web", "rl"] {
        assert!(f.host_file(0, &format!("/etc/init.d/{s}")).exists(), "no /etc/init.d/{s}");
        let link = fs::read_link(f.host_file(0, &format!("/etc/runlevels/default/{s}"))).unwrap();
        assert_eq!(link.to_str(), Some(format!("/etc/init.d/{s}").as_str()));
    }
    let web_pid = f.service_pid(0, "web");
    assert!(!web_pid.is_empty(), "supervise-daemon records no live child for web");
    assert_eq!(f.host_sh(0, &format!("cat /proc/{web_pid}/comm")), "busybox");
    let st = f.drover(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let web = v[0]["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap().clone();
    assert_eq!((web["state"].as_str(), web["healthy"].as_bool()), (Some("running"), Some(true)), "{web:#}");
    assert_eq!(web["pid"].to_string(), web_pid, "{web:#}");
    assert!(web["uptime_ms"].as_u64().is_some(), "{web:#}");
    assert_eq!(f.apply_ok()[0]["outcome"], "unchanged");

    // Restart on change; nothing for an unrelated file; reload.
    let tpl = layer.join("srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    assert_eq!(f.apply_ok()[0]["restarts"], serde_json::json!(["web"]));
    let restarted = f.service_pid(0, "web");
    assert!(!restarted.is_empty() && restarted != web_pid, "web was not restarted ({web_pid} → {restarted})");
    fs::write(layer.join("etc/motd"), "new motd\n").unwrap();
    assert_eq!(f.apply_ok()[0]["restarts"], serde_json::json!([]));
    assert_eq!(f.service_pid(0, "web"), restarted, "web restarted for an unrelated file");
    let rl_pid = f.service_pid(0, "rl");
    fs::write(layer.join("etc/rl/conf"), "2\n").unwrap();
    assert_eq!(f.apply_ok()[0]["restarts"], serde_json::json!(["rl:reload"]));
    assert_eq!(f.service_pid(0, "rl"), rl_pid, "a reload-on change restarted rl");
    let start = Instant::now();
    while !f.host_file(0, "/var/tmp/rl-reloads").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "rl never saw its reload (SIGHUP)");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Logs: supervise-daemon's file, one hello per start of web.
    assert!(f.host_file(0, "/var/log/drover/web/current").exists());
    let r = f.drover(&["logs", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hellos: Vec<&str> = r.stdout.lines().filter(|l| l.contains("hello from h1")).collect();
    assert_eq!(hellos.len(), 2, "{}", r.stdout);
    assert!(hellos.iter().all(|l| l.starts_with("h1  ") && l.ends_with("  hello from h1")), "{hellos:?}");

    // The health gate: a crash loop whose probe reaches web.
    fs::create_dir_all(layer.join("opt/api")).unwrap();
    fs::write(layer.join("opt/api/api.py"), SQUATTER).unwrap();
    fs::write(
        p.join("services/api.toml"),
        "command = \"python3 -u /opt/api/api.py\"\n[health]\nhttp = \"http://127.0.0.1:8080/\"\nretries = 5\ninterval = \"200ms\"\n",
    )
    .unwrap();
    let with_rl = fs::read_to_string(&role).unwrap();
    fs::write(&role, with_rl.replace("\"web\", \"rl\"]", "\"web\", \"rl\", \"api\"]")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "a service that does not run must fail the run:\n{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("rolled-back"), Some(4)), "{h:#}");
    let failure = &h["failure"];
    assert_eq!(failure["service"], "api", "{h:#}");
    assert!(failure["log"].to_string().contains("Address already in use"), "{h:#}");
    // supervise-daemon runs, its child does not: a crash loop, as such.
    assert_eq!(failure["state"]["state"], "restarting", "{h:#}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("service api") && error.contains("supervisor: "), "{error}");
    assert!(f.service_pid(0, "api").is_empty(), "the rollback stops api again");
    assert!(!f.host_file(0, "/etc/init.d/api").exists(), "api's script outlived the rollback");
    assert!(fs::symlink_metadata(f.host_file(0, "/etc/runlevels/default/api")).is_err(), "api still in default");
    fs::write(&role, with_rl).unwrap();
    fs::remove_dir_all(layer.join("opt")).unwrap();
    fs::remove_file(p.join("services/api.toml")).unwrap();

    // Drain and undrain.
    assert_eq!(f.drover(&["drain", "h1", "--reason", "disk swap"]).code, 0);
    let st: serde_json::Value = serde_json::from_str(&f.drover(&["status", "--json"]).stdout).unwrap();
    assert_eq!(st[0]["drained"], "disk swap");
    assert!(st[0]["services"].as_array().unwrap().iter().all(|s| s["state"] == "down"), "{st:#}");
    assert!(f.service_pid(0, "web").is_empty(), "a drained host's service must not run");
    let (_, code) = host_status(&f, 0, "test -e /etc/runlevels/default/web");
    assert_ne!(code, 0, "a drained service stays in the runlevel: a reboot would start it");
    let r = f.apply_json(&[]);
    assert!(r.code == 0 && r.stderr.contains("skipping h1: drained"), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(f.drover(&["undrain", "h1"]).code, 0);
    assert!(!f.service_pid(0, "web").is_empty(), "undrain must start web again");
    assert!(curl(&format!("http://{}:8080/", f.lab_hosts()[0].address)).contains("<h1>v2 "));

    // A lockout reverts itself.
    let keys = f.lock_root_out(0, &layer);
    let r = f.apply_json(&["--confirm-timeout", "4s"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let h = &r.hosts()[0];
    assert!(h["outcome"] == "failed" && h["error"].as_str().unwrap().contains("reverts it by itself"), "{h}");
    f.wait_keys_restored(0, &keys);
    fs::remove_dir_all(layer.join("root")).unwrap();
    let h = &f.apply_ok()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("unchanged"), Some(4)), "{h}");
}
