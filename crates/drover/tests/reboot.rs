//! Reboots, for real, on lab hosts: `drover lab reboot`, a host rebooting
//! itself, and magic rollback that holds across a reboot (`apply --reboot`,
//! `rollout start --reboot`, `drover reboot`). Real sshd, real init (runit
//! or systemd as the host's pid 1), the real agent and its boot-time hook.
//!
//! Needs root (the lab does); fails loudly otherwise.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use drover_lab::Init;
use support::Fleet;

/// The command a host reboots itself with: systemd in order; the lab's
/// runit hosts (pid 1 is `runsvdir`) by `reboot(2)`, as busybox does it.
fn reboot_command(init: Init) -> &'static str {
    match init {
        Init::Systemd => "systemctl reboot",
        Init::Runit => "busybox reboot -f",
    }
}

/// Wait until `drover exec` works on host `i` again and `/run/before-boot`
/// (on the host's tmpfs, so gone after a boot) is gone: the host rebooted.
fn wait_rebooted(f: &Fleet, i: usize, within: Duration) {
    let host = &f.lab_hosts()[i].name;
    let deadline = Instant::now() + within;
    loop {
        let r = f.drover(&["exec", host, "--", "test -e /run/before-boot && echo same-boot || echo rebooted"]);
        if r.code == 0 && r.stdout.contains("rebooted") {
            return;
        }
        assert!(Instant::now() < deadline, "{host} did not come back rebooted:\n{}\n{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `drover lab reboot h1` kills every process of the host (a `sleep` started
/// over SSH is gone, `/run` is empty again), keeps its root file system as
/// it is on disk (a file written under /root is still there), brings sshd
/// back, and `drover exec` works again. Then the host reboots *itself*
/// (`systemctl reboot` / `reboot(2)`): it boots again by itself, the same way.
fn lab_reboot(init: Init) {
    let f = Fleet::on("rb-lab", 1, init);
    // The background shell may not have become `sleep` yet when pgrep
    // looks (a loaded machine): wait for it, up to 5 s.
    let mark = "nohup sleep 1000 >/dev/null 2>&1 & echo kept > /root/kept; touch /run/before-boot; \
                i=0; until pgrep -x sleep >/dev/null || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done; \
                pgrep -xc sleep";
    assert_eq!(f.host_sh(0, mark), "1");
    let r = f.lab(&["reboot", "h1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("h1 rebooted"), "{}", r.stdout);
    let after =
        f.host_sh(0, "pgrep -xc sleep; cat /root/kept; test -e /run/before-boot && echo same-boot || echo rebooted");
    assert_eq!(after, "0\nkept\nrebooted");

    f.host_sh(0, "touch /run/before-boot");
    f.host_sh(0, &format!("(sleep 1; {}) >/dev/null 2>&1 &", reboot_command(init)));
    wait_rebooted(&f, 0, Duration::from_secs(90));
    assert_eq!(f.host_sh(0, "cat /root/kept"), "kept");

    // A frozen host reboots too, and is no longer frozen after it.
    assert_eq!(f.lab(&["fault", "h1", "freeze"]).code, 0);
    let r = f.lab(&["reboot", "all"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let status = f.lab(&["status", "--json"]);
    assert!(status.stdout.contains("\"up\"") && !status.stdout.contains("frozen\""), "{}", status.stdout);
    assert_eq!(f.host_sh(0, "echo back"), "back");
    // A host the lab does not have: refused, naming it.
    let r = f.lab(&["reboot", "h9"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("h9"), "{}", r.stderr);
}
on_both_inits!(lab_reboot: lab_reboot_restarts_the_host_from_its_root_on_disk_runit, lab_reboot_restarts_the_host_from_its_root_on_disk_systemd);

/// Mark host `i`'s current boot (a file on its tmpfs `/run`).
fn mark_boot(f: &Fleet, i: usize) {
    f.host_sh(i, "touch /run/before-boot");
}

/// Did host `i` boot since [`mark_boot`]?
fn rebooted_since_mark(f: &Fleet, i: usize) -> bool {
    f.host_sh(i, "test -e /run/before-boot && echo same-boot || echo rebooted") == "rebooted"
}

/// Where the agent's boot-time hook lives on a host with `init`.
fn hook_path(init: Init) -> &'static str {
    match init {
        Init::Systemd => "/etc/systemd/system/drover-boot.service",
        Init::Runit => "/etc/runit/boot-run/10-drover-boot.sh",
    }
}

/// `apply --reboot` with a good generation: the host reboots, comes back,
/// its services are healthy, and the generation is confirmed after the
/// boot: reported `changed` and `rebooted`, nothing left pending, the new
/// files in place, the boot-time hook installed (on systemd, enabled early
/// in the boot).
fn good_generation_is_confirmed_after_reboot(init: Init) {
    let f = Fleet::on("rb-good", 1, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    mark_boot(&f, 0);
    std::fs::write(f.project().join("layers/site/etc/motd"), "after the reboot\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "20s", "--reboot-timeout", "90s"]);
    eprintln!("apply --reboot, confirmed after the boot, in {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "changed", "{h}");
    assert_eq!(h["rebooted"], true, "{h}");
    assert_eq!(h["generation"], 2, "{h}");
    assert!(rebooted_since_mark(&f, 0), "the host did not reboot");
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists(), "generation 2 still unconfirmed");
    assert_eq!(std::fs::read_to_string(f.host_file(0, "/etc/motd")).unwrap(), "after the reboot\n");
    assert!(f.host_file(0, hook_path(init)).exists(), "no boot-time hook at {}", hook_path(init));
    if init == Init::Systemd {
        assert_eq!(
            f.host_sh(0, "systemctl is-enabled drover-boot; systemctl is-active drover-boot"),
            "enabled\nactive"
        );
        // It ran before the service drover manages started.
        let t = f.host_sh(
            0,
            "systemctl show -P ActiveEnterTimestampMonotonic drover-boot; systemctl show -P ExecMainStartTimestampMonotonic web",
        );
        let t: Vec<u64> = t.lines().map(|l| l.parse().unwrap()).collect();
        assert!(t[0] > 0 && t[0] <= t[1], "drover-boot done at {} us, web started at {} us", t[0], t[1]);
    }
    let boots = f.host_sh(0, "cat /var/lib/drover/boot.json");
    assert!(boots.contains("\"boots\": 1"), "{boots}");
    // The service came back with the boot (the page keeps the generation
    // it last changed in).
    let web = support::curl(&format!("http://{}:8080/", f.lab_hosts()[0].address));
    assert!(web.contains("host: h1"), "{web}");
    // Confirmed means kept: well past the agent's deadline, still generation 2.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}
on_both_inits!(good_generation_is_confirmed_after_reboot: good_generation_is_confirmed_after_reboot_runit, good_generation_is_confirmed_after_reboot_systemd);

/// A generation that breaks SSH only once sshd restarts (a drop-in moving
/// it to another port: the running sshd keeps its configuration) is
/// applied with `--reboot`. After the boot nobody can log in; the agent's
/// boot-time hook had re-armed the watchdog, which reverts at the deadline
/// and reboots once more into generation 1. The controller, still waiting,
/// finds it there: `rolled-back` with the agent's reason, exit code 2, no
/// operator action. The drop-in is gone, SSH works, the boot-loop guard
/// says why it rebooted, and the host booted exactly twice.
fn generation_breaking_ssh_after_reboot_comes_back_on_the_previous(init: Init) {
    let f = Fleet::on("rb-ssh", 1, init);
    assert_eq!(f.apply_json(&[]).code, 0);
    mark_boot(&f, 0);
    let dropin = f.project().join("layers/site/etc/ssh/sshd_config.d/zz-moved.conf");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    std::fs::write(&dropin, "Port 2222\n").unwrap();
    let started = Instant::now();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "8s", "--reboot-timeout", "60s"]);
    assert_eq!(r.code, 2, "a rolled-back host fails the run:\n{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h}");
    assert_eq!(h["rebooted"], true, "{h}");
    assert_eq!(h["generation"], 1, "{h}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("generation 2 was not confirmed after the reboot"), "{error}");
    assert!(error.contains("no confirmation from the controller before the deadline"), "{error}");
    assert!(error.contains("rebooting once"), "{error}");
    assert!(!f.host_file(0, "/etc/ssh/sshd_config.d/zz-moved.conf").exists(), "the drop-in is still there");
    assert!(rebooted_since_mark(&f, 0));
    let guard = f.host_sh(0, "cat /var/lib/drover/reboot-guard.json; cat /var/lib/drover/boot.json");
    assert!(guard.contains("\"generation\": 2") && guard.contains("\"boots\": 2"), "{guard}");
    eprintln!("rolled back across two reboots in {:.1}s", started.elapsed().as_secs_f64());
    // A later apply (without the drop-in) sees generation 1 and is a no-op.
    std::fs::remove_dir_all(f.project().join("layers/site/etc/ssh")).unwrap();
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}
on_both_inits!(generation_breaking_ssh_after_reboot_comes_back_on_the_previous: generation_breaking_ssh_after_reboot_comes_back_on_the_previous_runit, generation_breaking_ssh_after_reboot_comes_back_on_the_previous_systemd);

/// Simulated hosts are directories on the controller machine: `--reboot`
/// with `--simulate` is refused before any host is touched (exit 1, saying
/// what to drop), for `apply`, `rollout start` and `drover reboot`; the
/// simulated hosts stay as they were.
#[test]
fn reboot_is_refused_for_simulated_hosts_before_any_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    let sim = dir.path().join("sim");
    let init = std::process::Command::new(support::DROVER).arg("init").arg(&proj).output().unwrap();
    assert!(init.status.success());
    std::fs::write(proj.join("inventory.toml"), "[hosts.s1]\naddress = \"s1\"\n").unwrap();
    let drover = |args: &[&str]| {
        support::Run::from(
            std::process::Command::new(support::DROVER).arg("-C").arg(&proj).args(args).output().unwrap(),
        )
    };
    let sim_arg = sim.to_str().unwrap();
    for args in [
        vec!["apply", "--reboot", "--simulate", sim_arg],
        vec!["rollout", "start", "--reboot", "--simulate", sim_arg],
        vec!["reboot", "all", "--simulate", sim_arg],
    ] {
        let r = drover(&args);
        assert_eq!(r.code, 1, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("simulated hosts cannot reboot"), "{args:?}: {}", r.stderr);
        assert!(!sim.join("s1/var/lib/drover").exists(), "{args:?} touched the simulated host");
    }
    // No rollout was recorded (none to resume or abort).
    let r = drover(&["rollout", "status", "--json"]);
    assert_eq!((r.code, r.stdout.trim()), (0, "[]"), "{}", r.stderr);
}

/// `rollout start --reboot` over 6 hosts in batches of 2, where h3's new
/// generation starts a service that fails its health check: batch 1 (h1,
/// h2) is applied, rebooted and confirmed; batch 2 stops the rollout (h3
/// rolled back by its own health gate), and h4, which had been applied and
/// rebooted, is reverted to generation 1, itself with a reboot; batch 3
/// (h5, h6) is never touched, not even rebooted.
#[test]
fn rolling_reboot_stops_and_reverts_the_batch_with_an_unhealthy_host() {
    let f = Fleet::new("rb-roll", 6);
    assert_eq!(f.apply_json(&[]).code, 0);
    for i in 0..6 {
        mark_boot(&f, i);
    }
    let p = f.project();
    std::fs::write(p.join("layers/site/etc/motd"), "generation two\n").unwrap();
    std::fs::write(
        p.join("services/web-bad.toml"),
        "command = \"busybox httpd -f -p 8081 -h /srv/site\"\n\n[health]\nhttp = \"http://127.0.0.1:8081/missing\"\ntimeout = \"1s\"\nretries = 4\ninterval = \"250ms\"\n",
    )
    .unwrap();
    let site = std::fs::read_to_string(p.join("roles/site.toml")).unwrap();
    std::fs::write(
        p.join("roles/broken.toml"),
        site.replace("services = [\"web\"]", "services = [\"web\", \"web-bad\"]"),
    )
    .unwrap();
    let inv = std::fs::read_to_string(p.join("inventory.toml")).unwrap();
    std::fs::write(p.join("inventory.toml"), inv.replace("[hosts.h3]\n", "[hosts.h3]\nroles = [\"broken\"]\n"))
        .unwrap();

    let r = f.drover(&[
        "rollout",
        "start",
        "--batch",
        "2",
        "--reboot",
        "--reboot-timeout",
        "60s",
        "--retries",
        "0",
        "--json",
    ]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    let batches = v["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "the third batch must not run: {v}");
    assert_eq!(batches[0]["outcome"], "ok", "{v}");
    for h in batches[0]["reports"].as_array().unwrap() {
        assert_eq!(
            (h["outcome"].as_str(), h["rebooted"].as_bool(), h["generation"].as_u64()),
            (Some("changed"), Some(true), Some(2)),
            "{h}"
        );
    }
    let b2 = &batches[1];
    assert_eq!(b2["outcome"], "failed", "{b2}");
    assert!(b2["reason"].as_str().unwrap().contains("h3"), "{b2}");
    let h3 = b2["reports"].as_array().unwrap().iter().find(|h| h["host"] == "h3").unwrap();
    assert_eq!(h3["outcome"], "rolled-back", "{h3}");
    assert!(h3["error"].as_str().unwrap().contains("web-bad"), "{h3}");
    let reverted = b2["reverted"].as_array().unwrap();
    assert_eq!(reverted.len(), 1, "only h4 had been updated: {b2}");
    assert_eq!((reverted[0]["host"].as_str(), reverted[0]["generation"].as_u64()), (Some("h4"), Some(1)), "{b2}");
    assert_eq!(reverted[0]["rebooted"], true, "the revert reboots too: {b2}");

    let motd = |i: usize| std::fs::read_to_string(f.host_file(i, "/etc/motd")).unwrap();
    for i in [0, 1] {
        assert_eq!(motd(i), "generation two\n");
        assert!(rebooted_since_mark(&f, i), "h{} was not rebooted", i + 1);
    }
    for i in [2, 3, 4, 5] {
        assert_ne!(motd(i), "generation two\n", "h{} is not back on generation 1", i + 1);
    }
    assert!(!rebooted_since_mark(&f, 2), "h3 failed before its reboot: it must not have rebooted");
    assert!(rebooted_since_mark(&f, 3), "h4's revert did not reboot it");
    for i in [4, 5] {
        assert!(!rebooted_since_mark(&f, i), "h{} of the untouched batch was rebooted", i + 1);
    }
    for i in 0..6 {
        assert!(!f.host_file(i, "/var/lib/drover/pending.json").exists(), "h{} left unconfirmed", i + 1);
    }
}

/// `drover reboot all --batch 2`: every host rebooted and back healthy,
/// batch by batch (reported `rebooted`, exit 0). Then h1 is made to come
/// back without its web service (runit's `down` file: not started at boot):
/// its batch fails with the reason, the next batch is `skipped`, exit 2.
#[test]
fn rolling_reboot_waits_for_each_batch_and_stops_at_an_unhealthy_one() {
    let f = Fleet::new("rb-cmd", 3);
    assert_eq!(f.apply_json(&[]).code, 0);
    for i in 0..3 {
        mark_boot(&f, i);
    }
    let r = f.drover(&["reboot", "all", "--batch", "2", "--reboot-timeout", "60s", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for h in r.hosts() {
        assert_eq!((h["outcome"].as_str(), h["rebooted"].as_bool()), (Some("rebooted"), Some(true)), "{h}");
    }
    for i in 0..3 {
        assert!(rebooted_since_mark(&f, i), "h{} was not rebooted", i + 1);
        mark_boot(&f, i);
    }
    f.host_sh(0, "touch /etc/sv/web/down");
    let r = f.drover(&["reboot", "h1,h3", "--batch", "1", "--reboot-timeout", "60s", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let hosts = r.hosts();
    assert_eq!(hosts[0]["outcome"], "failed", "{}", r.stdout);
    assert!(hosts[0]["error"].as_str().unwrap().contains("services unhealthy after the reboot"), "{}", r.stdout);
    assert_eq!(hosts[1]["outcome"], "skipped", "{}", r.stdout);
    assert!(hosts[1]["error"].as_str().unwrap().contains("h1"), "{}", r.stdout);
    assert!(rebooted_since_mark(&f, 0));
    assert!(!rebooted_since_mark(&f, 2), "h3 was rebooted after h1's batch failed");
}

/// A host that does not come back (here sshd stays down after the boot:
/// runit's `down` file) fails `drover reboot` once the wait is over (twice
/// the reboot timeout plus the confirm window), saying so and what the last
/// attempt got.
#[test]
fn a_host_that_does_not_come_back_in_time_fails_with_the_reason() {
    let f = Fleet::new("rb-lost", 1);
    let settings = f.project().join("drover.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("confirm-timeout = \"30s\"", "confirm-timeout = \"3s\"")).unwrap();
    f.host_sh(0, "touch /etc/service/sshd/down");
    let started = Instant::now();
    let r = f.drover(&["reboot", "h1", "--reboot-timeout", "2s", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["rebooted"].as_bool()), (Some("failed"), Some(true)), "{h}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("did not come back from the reboot within 7s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
    // Put sshd back from outside and reboot the host the lab's way.
    std::fs::remove_file(f.host_file(0, "/etc/service/sshd/down")).unwrap();
    assert_eq!(f.lab(&["reboot", "h1"]).code, 0);
    assert_eq!(f.host_sh(0, "echo back"), "back");
}

/// `drover reboot` refuses a host whose last generation still awaits its
/// confirmation (the agent was killed right after activating it): a reboot
/// now would decide that generation's fate by accident. The next `apply`
/// confirms it; then the reboot goes through.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn reboot_refuses_a_host_with_an_unconfirmed_generation() {
    let f = Fleet::new("rb-pending", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    std::fs::write(f.project().join("layers/site/etc/motd"), "pending\n").unwrap();
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    std::fs::write(&hook, "awaiting-confirm").unwrap();
    let mut child = f.spawn_drover(&["apply", "--json", "--confirm-timeout", "120s", "--retries", "0"]);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "agent never reached awaiting-confirm");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(f.kill_agent(0) > 0);
    std::fs::remove_file(&hook).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(f.host_file(0, "/var/lib/drover/pending.json").exists());

    let r = f.drover(&["reboot", "h1", "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["rebooted"].as_bool()), (Some("failed"), Some(false)), "{h}");
    assert!(h["error"].as_str().unwrap().contains("generation 2 still awaits confirmation"), "{h}");
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "changed");
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists());
    let r = f.drover(&["reboot", "h1", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// `reboot = true` in a role's `[rollout]` policy: a plain `apply` reboots
/// the hosts of that role (and confirms after the boot), and only them.
#[test]
fn reboot_in_a_role_policy_reboots_that_roles_hosts_on_apply() {
    let f = Fleet::new("rb-role", 2);
    let p = f.project();
    let site = std::fs::read_to_string(p.join("roles/site.toml")).unwrap();
    std::fs::write(p.join("roles/kernel.toml"), format!("{site}\n[rollout]\nreboot = true\n")).unwrap();
    let inv = std::fs::read_to_string(p.join("inventory.toml")).unwrap();
    std::fs::write(p.join("inventory.toml"), inv.replace("[hosts.h2]\n", "[hosts.h2]\nroles = [\"kernel\"]\n"))
        .unwrap();
    assert_eq!(f.apply_json(&["--reboot-timeout", "60s"]).code, 0);
    mark_boot(&f, 0);
    mark_boot(&f, 1);
    std::fs::write(p.join("layers/site/etc/motd"), "v2\n").unwrap();
    let r = f.apply_json(&["--reboot-timeout", "60s"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let hosts = r.hosts();
    assert_eq!((hosts[0]["outcome"].as_str(), hosts[0]["rebooted"].as_bool()), (Some("changed"), Some(false)));
    assert_eq!((hosts[1]["outcome"].as_str(), hosts[1]["rebooted"].as_bool()), (Some("changed"), Some(true)));
    assert!(!rebooted_since_mark(&f, 0), "h1 has no role asking for reboots");
    assert!(rebooted_since_mark(&f, 1), "h2's role asks for reboots");
}

/// A generation healthy when activated but not after a boot (here runit's
/// `down` file in the web service's directory: the running service is
/// untouched, runit does not start it at boot). After the reboot the
/// controller finds web unhealthy and does not confirm; the host reverts
/// at the deadline and reboots into generation 1, where web starts again.
/// Reported `rolled-back`, naming the unhealthy service.
#[test]
fn a_generation_unhealthy_only_after_the_boot_is_not_confirmed_and_reverts() {
    let f = Fleet::new("rb-sick", 1);
    assert_eq!(f.apply_json(&[]).code, 0);
    let down = f.project().join("layers/site/etc/sv/web/down");
    std::fs::create_dir_all(down.parent().unwrap()).unwrap();
    std::fs::write(&down, "").unwrap();
    let r = f.apply_json(&["--reboot", "--confirm-timeout", "6s", "--reboot-timeout", "60s"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!((h["outcome"].as_str(), h["generation"].as_u64()), (Some("rolled-back"), Some(1)), "{h}");
    let error = h["error"].as_str().unwrap();
    assert!(error.contains("services unhealthy: web"), "{error}");
    assert!(error.contains("rebooting once"), "{error}");
    assert!(!f.host_file(0, "/etc/sv/web/down").exists());
    let web = support::curl(&format!("http://{}:8080/", f.lab_hosts()[0].address));
    assert!(web.contains("host: h1"), "{web}");
}
