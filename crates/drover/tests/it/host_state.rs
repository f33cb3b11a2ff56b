//! What drover keeps on a host, and where it writes, seen by an unprivileged
//! user of that host (the lab's `op`); and the crash window between the
//! commit of a generation and its proof of health (issues 10 and 11).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use crate::support::{curl, Fleet, Run};

/// The page host 0 serves, once its web server answers (a service that was
/// just (re)started may not listen yet): up to 20 s.
fn page(f: &Fleet) -> String {
    let addr = format!("{}:8080", f.lab_hosts()[0].address);
    let start = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    curl(&format!("http://{addr}/"))
}

/// `script` run as `op` on host `i`: its exit code and output.
fn as_op(f: &Fleet, i: usize, script: &str) -> (i32, String) {
    let host = &f.lab_hosts()[i].name;
    let quoted = script.replace('\'', r"'\''");
    let r = f.drover(&[
        "exec",
        host,
        "--",
        &format!("setpriv --reuid=op --regid=op --init-groups /bin/sh -c '{quoted}'; echo \"exit=$?\""),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = r.stdout.split_once('\n').map(|(_, o)| o.to_string()).unwrap_or_default();
    let code = out
        .rsplit_once("exit=")
        .and_then(|(_, c)| c.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no exit status in: {out}"));
    (code, out)
}

/// Every path under `/var/lib/drover` on host `i`, from the controller's
/// side (the overlay), with its mode.
fn state_tree(f: &Fleet, i: usize) -> Vec<(String, u32, bool)> {
    let root = f.host_file(i, "/var/lib/drover");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let md = fs::symlink_metadata(e.path()).unwrap();
            let rel = format!("/var/lib/drover/{}", e.path().strip_prefix(&root).unwrap().display());
            if md.is_dir() {
                stack.push(e.path());
            }
            out.push((rel, md.mode() & 0o7777, md.is_dir()));
        }
    }
    out.sort();
    out
}

#[test]
fn op_can_read_nothing_drover_keeps_and_old_installations_are_repaired() {
    let f = Fleet::new("hs-private", 1);
    // A managed 0600 file, and one that replaces a host file whose previous
    // content is secret too (it goes to the blob store and to backup/).
    fs::write(f.host_file(0, "/etc/app-secret.conf"), "previous secret 1f6e\n").unwrap();
    fs::set_permissions(f.host_file(0, "/etc/app-secret.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    let layer = f.project().join("layers/site/etc");
    fs::write(layer.join("app-secret.conf"), "new secret 9c2a\n").unwrap();
    fs::set_permissions(layer.join("app-secret.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(fs::read_to_string(f.host_file(0, "/etc/app-secret.conf")).unwrap(), "new secret 9c2a\n");

    let check = |when: &str| {
        let tree = state_tree(&f, 0);
        assert!(tree.len() > 10, "{tree:?}");
        for (p, mode, dir) in &tree {
            if *dir {
                assert_eq!(*mode, 0o700, "{when}: {p} is {mode:o}");
            } else {
                assert!(*mode == 0o600 || *mode == 0o700, "{when}: {p} is {mode:o}");
            }
            let (code, out) = as_op(&f, 0, &format!("cat '{p}' || ls '{p}'"));
            assert_ne!(code, 0, "{when}: op read {p}: {out}");
            assert!(!out.contains("1f6e") && !out.contains("9c2a"), "{when}: {p} leaked: {out}");
        }
        let (code, out) = as_op(&f, 0, "ls /var/lib/drover");
        assert_ne!(code, 0, "{when}: op listed /var/lib/drover: {out}");
        let (code, out) = as_op(&f, 0, "grep -r secret /var/lib/drover");
        assert!(code != 0 && !out.contains("1f6e") && !out.contains("9c2a"), "{when}: {out}");
    };
    check("after apply");

    // An installation from before the store was private: everything
    // world-readable, no marker. The next contact repairs it.
    let root = f.host_file(0, "/var/lib/drover");
    fs::remove_file(root.join("private-v1")).unwrap();
    let st = std::process::Command::new("chmod").args(["-R", "a+rX"]).arg(&root).status().unwrap();
    assert!(st.success());
    // (Checked from the controller's side: any session, even `exec`, repairs.)
    assert!(state_tree(&f, 0).iter().all(|(_, mode, _)| mode & 0o004 != 0), "the old installation is world-readable");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    check("after repair");
}

/// The managed file `/srv/shared/app/conf`; `op` is later given
/// `/srv/shared` (as a home directory would be) and replaces `app` with a
/// symlink to `/root` before the next apply.
#[test]
fn a_parent_swapped_for_a_symlink_to_root_is_refused_and_nothing_lands_under_root() {
    let f = Fleet::new("hs-symlink", 1);
    let layer = f.project().join("layers/site/srv/shared/app");
    fs::create_dir_all(&layer).unwrap();
    fs::write(layer.join("conf"), "v1\n").unwrap();
    assert_eq!(f.apply_json(&[]).code, 0);
    assert_eq!(fs::read_to_string(f.host_file(0, "/srv/shared/app/conf")).unwrap(), "v1\n");
    let root_before = f.host_sh(0, "ls -la /root; find /root -newer /etc/hostname");

    // op owns /srv/shared now, and swaps the managed file's parent.
    f.host_sh(0, "chown op:op /srv/shared");
    let (code, out) = as_op(&f, 0, "mv /srv/shared/app /srv/shared/app.old && ln -s /root /srv/shared/app");
    assert_eq!(code, 0, "{out}");
    fs::write(layer.join("conf"), "v2 payload\n").unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let err = r.hosts()[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("/srv/shared"), "the refusal names the path: {err}");
    assert!(!f.host_file(0, "/root/conf").exists(), "written through the symlink");
    assert_eq!(f.host_sh(0, "ls -la /root; find /root -newer /etc/hostname"), root_before, "/root changed");

    // The same swap done by root (so no directory is writable by others):
    // refused because a parent is a symlink drover does not manage.
    f.host_sh(0, "chown root:root /srv/shared; rm /srv/shared/app; ln -s /root /srv/shared/app");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let err = r.hosts()[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("/srv/shared/app") && err.contains("symlink"), "{err}");
    assert!(!f.host_file(0, "/root/conf").exists(), "written through the symlink");
    assert_eq!(f.host_sh(0, "ls -la /root; find /root -newer /etc/hostname"), root_before, "/root changed");
}

/// Kill the agent at `point` of applying generation 2 (a changed page, so
/// the web service restarts); the controller is given no retry. Returns
/// the fleet, the web service's pid under generation 1, and the page.
fn kill_at(name: &str, point: &str, confirm: &str) -> (Fleet, String) {
    let f = Fleet::new(name, 1);
    let cfg = f.project().join("drover.toml");
    fs::write(
        &cfg,
        fs::read_to_string(&cfg)
            .unwrap()
            .replace("confirm-timeout = \"30s\"", &format!("confirm-timeout = \"{confirm}\"")),
    )
    .unwrap();
    assert_eq!(f.apply_json(&[]).code, 0);
    let v1 = page(&f);
    assert!(v1.contains("generation: 1"), "{v1}");
    let tpl = f.project().join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    let hook = f.host_file(0, "/var/lib/drover/test-hook");
    fs::write(&hook, point).unwrap();
    let mut child = f.spawn_drover(&["apply", "--json", "--retries", "0"]);
    let reached = f.host_file(0, "/var/lib/drover/test-hook.reached");
    let start = Instant::now();
    while !reached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "agent never reached {point}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The new page is live at this point: the services restarted with it.
    assert!(page(&f).contains("<h1>v2 "));
    // Kill the agent and the controller (which would otherwise confirm).
    assert!(f.kill_agent(0) > 0, "no agent process found");
    let _ = child.kill();
    let _ = child.wait();
    fs::remove_file(&hook).unwrap();
    (f, v1)
}

fn status(f: &Fleet) -> serde_json::Value {
    let r: Run = f.drover(&["status", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// Killed after the swap and the restart, before the health check: the
/// next contact reverts to generation 1 and restarts the service on it.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn sigkill_before_health_reverts_and_the_service_serves_the_old_generation() {
    let (f, v1) = kill_at("hs-before-health", "before-health", "30s");
    let st = status(&f);
    let text = st.to_string();
    assert!(text.contains("reverted to 1"), "recovery named: {text}");
    assert_eq!(page(&f), v1, "the service serves generation 1 again");
    assert!(!f.service_pid(0, "web").is_empty(), "web is running");
    assert_eq!(
        fs::read_to_string(f.host_file(0, "/var/lib/drover/state.json")).map(|s| s.contains("\"current\": 1")).ok(),
        Some(true)
    );
    assert!(!f.host_file(0, "/var/lib/drover/pending.json").exists());
    // And the next apply brings generation 2 properly, health-checked.
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(page(&f).contains("<h1>v2 "));
}

/// Killed while waiting for confirmation (the controller too): the
/// watchdog reverts at the deadline and the service serves generation 1.
#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn sigkill_awaiting_confirm_is_reverted_by_the_watchdog_and_the_service_serves_the_old_generation() {
    let (f, v1) = kill_at("hs-awaiting", "awaiting-confirm", "3s");
    let start = Instant::now();
    loop {
        let now = page(&f);
        if now == v1 && !f.host_file(0, "/var/lib/drover/pending.json").exists() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not reverted: {now}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(!f.service_pid(0, "web").is_empty(), "web is running");
    let st = status(&f).to_string();
    assert!(st.contains("\"generation\":1") || st.contains("\"generation\": 1"), "{st}");
}
