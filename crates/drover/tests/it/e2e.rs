//! End to end: the real `drover` binary against real sshd hosts of the lab
//! fleet (network namespaces, overlay roots, runit or systemd as pid 1).
//! Each test brings up its own small lab under a unique name and tears it
//! down when done. The scenarios that exercise a supervisor (apply,
//! restart-on-change, health gate, rollback, magic rollback) run twice, as
//! `…_runit` and `…_systemd`.
//!
//! Needs root (the lab does); fails loudly otherwise.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::{curl, Fleet};
use drover_lab::Init;

on_both_inits!(
    apply_then_noop_then_one_change_restarts_only_what_depends_on_it:
    apply_then_noop_then_one_change_restarts_only_what_depends_on_it_runit,
    apply_then_noop_then_one_change_restarts_only_what_depends_on_it_systemd
);

fn apply_then_noop_then_one_change_restarts_only_what_depends_on_it(init: Init) {
    let f = Fleet::on("e2e-apply", 3, init);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in r.hosts() {
        assert_eq!(h["outcome"], "changed", "{h}");
        assert_eq!(h["restarts"], serde_json::json!(["web"]), "{h}");
    }
    for (i, host) in f.lab_hosts().iter().enumerate() {
        let page = curl(&format!("http://{}:8080/", host.address));
        assert!(page.contains(&format!("host: h{}", i + 1)) && page.contains("generation: 1"), "{page}");
    }
    assert!(!f.service_pid(0, "web").is_empty(), "{} does not report web running", f.init());

    // Second apply: unchanged everywhere, nothing sent, nothing written.
    let before: Vec<_> = (0..3).map(|i| f.upper_snapshot(i)).collect();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in r.hosts() {
        assert_eq!(h["outcome"], "unchanged", "{h}");
        assert_eq!(h["bytes_sent"], 0, "{h}");
        assert_eq!(h["files_written"], 0, "{h}");
    }
    for (i, snap) in before.iter().enumerate() {
        assert_eq!(snap, &f.upper_snapshot(i), "no-op apply wrote to host h{}", i + 1);
    }

    // Change the template: only index.html is sent, only web restarts.
    let pid_before = f.service_pid(0, "web");
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in r.hosts() {
        assert_eq!(h["outcome"], "changed");
        assert_eq!(h["changes"].as_array().unwrap().len(), 1, "{h}");
        assert_eq!(h["changes"][0]["path"], "/srv/site/index.html");
        assert_eq!(h["blobs_sent"], 1, "{h}");
        assert_eq!(h["restarts"], serde_json::json!(["web"]));
    }
    assert_ne!(pid_before, f.service_pid(0, "web"), "web was not restarted");
    assert!(curl(&format!("http://{}:8080/", f.lab_hosts()[0].address)).contains("<h1>v2 "));

    // Change an unrelated file: nothing restarts.
    let pid_before = f.service_pid(0, "web");
    fs::write(f.project().join("layers/site/etc/motd"), "new motd\n").unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for h in r.hosts() {
        assert_eq!(h["changes"][0]["path"], "/etc/motd");
        assert_eq!(h["restarts"], serde_json::json!([]), "{h}");
    }
    assert_eq!(pid_before, f.service_pid(0, "web"), "web restarted for an unrelated file");
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "new motd\n");
}

#[test]
fn plan_shows_changes_and_writes_nothing() {
    let f = Fleet::new("e2e-plan", 2);
    assert!(fs::read_to_string(f.project().join(".gitignore")).unwrap().contains(".drover/"));
    let out = f.drover(&["plan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("+ /srv/site/index.html"), "{}", out.stdout);
    assert!(out.stdout.contains("planned"), "{}", out.stdout);
    assert!(!f.host_file(0, "/srv/site/index.html").exists());
}

on_both_inits!(
    failing_health_check_rolls_the_host_back:
    failing_health_check_rolls_the_host_back_runit,
    failing_health_check_rolls_the_host_back_systemd
);

fn failing_health_check_rolls_the_host_back(init: Init) {
    let f = Fleet::on("e2e-health", 2, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    let good = fs::read_to_string(f.host_file(0, "/srv/site/index.html")).unwrap();
    // Generation 2 changes the page and probes a URL that answers 404.
    let svc = f.project().join("services/web.toml");
    fs::write(
        &svc,
        fs::read_to_string(&svc).unwrap().replace("8080/\"", "8080/missing\"").replace("retries = 20", "retries = 12"),
    )
    .unwrap();
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, "broken {{ generation }}\n").unwrap();
    let r = f.apply_json(&["--hosts", "h1"]);
    assert_eq!(r.code, 2, "a rolled-back host must fail the run: {}", r.stdout);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h}");
    assert_eq!(h["generation"], 1, "{h}");
    assert!(h["error"].as_str().unwrap().contains("HTTP 404"), "{h}");
    assert_eq!(fs::read_to_string(f.host_file(0, "/srv/site/index.html")).unwrap(), good);
    assert!(curl(&format!("http://{}:8080/", f.lab_hosts()[0].address)).contains("generation: 1"));
}

#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn sigkill_of_the_agent_mid_apply_recovers_to_one_generation() {
    let f = Fleet::new("e2e-kill", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, "v2 {{ generation }}\n").unwrap();
    fs::write(f.project().join("layers/site/etc/motd"), "motd v2\n").unwrap();
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    fs::write(&hook, "mid-swap").unwrap();
    let child = f.spawn_drover(&["apply", "--json"]);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "agent never reached mid-swap");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Half the files are swapped: kill the agent outright, remove the hook so
    // the controller's retry goes through.
    let killed = f.kill_agent(0);
    assert!(killed > 0, "no agent process found on h1");
    fs::remove_file(&hook).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = crate::support::Run::from(out);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert!(h["recovered"].as_str().unwrap_or("").contains("rolled back"), "{h}");
    assert!(h["attempts"].as_u64().unwrap() >= 2, "{h}");
    // ...and says why it was tried again: the agent died (#26, item 6).
    let retried = h["retried"][0].as_str().unwrap_or_default();
    assert!(retried.starts_with("attempt 1: ") && retried.contains("the agent ended: killed"), "{h}");
    assert_eq!(fs::read_to_string(f.host_file(0, "/srv/site/index.html")).unwrap(), "v2 2\n");
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "motd v2\n");
}

#[test]
fn wrong_host_key_is_refused_and_nothing_is_applied() {
    let f = Fleet::new("e2e-hostkey", 2);
    let hosts = f.lab_hosts();
    let inv = f.project().join("inventory.toml");
    let text = fs::read_to_string(&inv).unwrap();
    // Pin h2's key for h1: as if h1's address now answered with another machine.
    let k1 = hosts[0].host_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let k2 = hosts[1].host_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fs::write(&inv, text.replacen(&k1, &k2, 1)).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2);
    let h1 = &r.hosts()[0];
    assert_eq!(h1["outcome"], "failed", "{h1}");
    let err = h1["error"].as_str().unwrap();
    assert!(err.contains("host key") && err.contains("drover trust"), "{err}");
    assert_eq!(h1["attempts"], 1, "a host key mismatch must not be retried");
    assert_eq!(r.hosts()[1]["outcome"], "changed");
    assert!(!f.host_file(0, "/var/lib/drover").exists(), "nothing may reach a host with a wrong key");
}

#[test]
fn csv_inventory_password_login_and_sudo_for_a_non_root_user() {
    let f = Fleet::new("e2e-csv", 2);
    fs::remove_file(f.project().join("inventory.toml")).unwrap();
    let csv = f.lab(&["inventory", "--csv"]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    fs::write(f.project().join("inventory.csv"), &csv.stdout).unwrap();
    // Unknown keys are refused until trusted.
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2);
    assert!(r.hosts()[0]["error"].as_str().unwrap().contains("drover trust"), "{}", r.stdout);
    let t = f.drover(&["trust"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(t.stdout.contains("SHA256:"), "{}", t.stdout);
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for h in r.hosts() {
        assert_eq!(h["outcome"], "changed", "{h}");
    }
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(f.host_file(0, "/srv/site/index.html")).unwrap();
    assert_eq!(md.uid(), 0, "files are installed as root through sudo");
    let agent = f.host_file(0, &drover::transport::bootstrap::agent_path());
    assert_eq!(fs::metadata(&agent).unwrap().uid(), 0, "the agent that runs as root is owned by root");
    assert!(curl(&format!("http://{}:8080/", f.lab_hosts()[1].address)).contains("host: 10.213."));
}

/// The agent travels gzip-compressed; a host without `gzip` gets it
/// uncompressed. Both end with the embedded agent, byte for byte, installed.
#[test]
fn a_host_without_gzip_gets_the_agent_uncompressed() {
    let f = Fleet::new("e2e-nogzip", 2);
    let gzip = f.host_file(1, "/usr/bin/gzip");
    fs::rename(&gzip, gzip.with_extension("off")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts().iter().all(|h| h["outcome"] == "changed"), "{}", r.stdout);
    for i in 0..2 {
        let agent = fs::read(f.host_file(i, &drover::transport::bootstrap::agent_path())).unwrap();
        assert!(agent == drover::agent_bin::bytes(), "h{}'s agent is the embedded one", i + 1);
    }
    assert!(!f.host_file(1, "/usr/bin/gzip").exists(), "h2 still has no gzip: it was not needed");
}

#[test]
fn bad_project_file_is_a_clear_error_and_nothing_is_applied() {
    let f = Fleet::new("e2e-badfile", 1);
    fs::write(f.project().join("roles/site.toml"), "layers = [\"site\"]\nservices = [\"web\"]\nrestart = true\n")
        .unwrap();
    let out = f.drover(&["apply"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("roles/site.toml:3") && out.stderr.contains("unknown field"), "{}", out.stderr);
    // A template error is caught before any host is contacted too.
    fs::write(f.project().join("roles/site.toml"), "layers = [\"site\"]\nservices = [\"web\"]\n").unwrap();
    fs::write(f.project().join("layers/site/srv/site/index.html.j2"), "{{ no_such_var }}\n").unwrap();
    let out = f.drover(&["apply"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("index.html.j2:1") && out.stderr.contains("undefined"), "{}", out.stderr);
    assert!(!f.host_file(0, "/var/lib/drover").exists(), "a host was contacted despite a bad project");
}

on_both_inits!(
    a_change_that_breaks_ssh_reverts_itself:
    a_change_that_breaks_ssh_reverts_itself_runit,
    a_change_that_breaks_ssh_reverts_itself_systemd
);

fn a_change_that_breaks_ssh_reverts_itself(init: Init) {
    let f = Fleet::on("e2e-magic", 1, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    // Generation 2 replaces root's authorized_keys (unmanaged so far) with a
    // key nobody has: the apply succeeds, but no new login can confirm it.
    let keys = f.lock_root_out(0, &f.project().join("layers/site"));
    let r = f.apply_json(&["--confirm-timeout", "4s"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "failed", "{h}");
    assert!(h["error"].as_str().unwrap().contains("reverts it by itself"), "{h}");
    f.wait_keys_restored(0, &keys);
    assert!(f.host_file(0, "/var/lib/drover/backup/2/root/.ssh/authorized_keys").exists());
    // And the host is reachable and on generation 1 again.
    fs::remove_dir_all(f.project().join("layers/site/root")).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.hosts()[0]["outcome"], "unchanged", "{}", r.stdout);
    assert_eq!(r.hosts()[0]["generation"], 1);
}

on_both_inits!(
    rollback_returns_to_the_previous_generation:
    rollback_returns_to_the_previous_generation_runit,
    rollback_returns_to_the_previous_generation_systemd
);

fn rollback_returns_to_the_previous_generation(init: Init) {
    let f = Fleet::on("e2e-rollback", 1, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    fs::write(f.project().join("layers/site/etc/motd"), "second\n").unwrap();
    assert_eq!(f.apply_json(&[]).code, 0);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "second\n");
    fs::write(f.project().join("layers/site/etc/motd"), "third\n").unwrap();
    assert_eq!(f.apply_json(&[]).code, 0);
    let out = f.drover(&["rollback", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.hosts()[0]["generation"], 2);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "second\n");
    // Further back, by number.
    let out = f.drover(&["rollback", "--to", "1", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.hosts()[0]["generation"], 1);
    assert!(fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap().contains("managed by drover"));
    let out = f.drover(&["rollback", "--to", "9", "--json"]);
    assert_eq!(out.code, 2);
    assert!(out.hosts()[0]["error"].as_str().unwrap().contains("not kept"), "{}", out.stdout);
}

#[test]
fn ssh_agent_authentication() {
    let f = Fleet::new("e2e-agent", 1);
    let inv = f.project().join("inventory.toml");
    let key_line = fs::read_to_string(&inv).unwrap().lines().find(|l| l.starts_with("key = ")).unwrap().to_string();
    let key = key_line.trim_start_matches("key = ").trim_matches('"').to_string();
    fs::write(&inv, fs::read_to_string(&inv).unwrap().replace(&format!("{key_line}\n"), "")).unwrap();
    let sock = f.project().join("agent.sock");
    let agent = std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let _agent = Kill(agent);
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    let add = std::process::Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &sock).output().unwrap();
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let out = std::process::Command::new(crate::support::DROVER)
        .args(["-C"])
        .arg(f.project())
        .args(["apply", "--json"])
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let r = crate::support::Run::from(out);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hosts()[0]["outcome"], "changed");
}
