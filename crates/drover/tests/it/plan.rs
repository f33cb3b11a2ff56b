//! `drover plan` on real lab hosts (and, for bundles and batching, simulated
//! ones): it changes nothing on a host, whatever state the host is in (never
//! applied to; a generation awaiting confirmation whose deadline passed,
//! which recovery would revert); `--diff` shows the host's real content
//! against the project's; `--exit-code` says whether anything would change.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Fleet;

/// Every entry under `dir` (recursively): kind, mode, owner, size, mtime and
/// content hash or link target. A missing `dir` is recorded as absent.
fn tree(dir: &Path, out: &mut BTreeMap<String, String>) {
    let md = match fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(_) => {
            out.insert(dir.display().to_string(), "absent".into());
            return;
        }
    };
    let t = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
    let common = format!("{:o} {}:{} {} {t}", md.permissions().mode(), md.uid(), md.gid(), md.size());
    let what = if md.file_type().is_symlink() {
        format!("link {common} -> {}", fs::read_link(dir).unwrap().display())
    } else if md.is_file() {
        format!("file {common} {}", blake3::hash(&fs::read(dir).unwrap()).to_hex())
    } else if md.is_dir() {
        for e in fs::read_dir(dir).unwrap().flatten() {
            tree(&e.path(), out);
        }
        format!("dir {common}")
    } else {
        format!("other {common}")
    };
    out.insert(dir.display().to_string(), what);
}

/// The host's drover state and every path the quickstart manages, plus the
/// overlay's record of everything the host ever wrote, except the agent
/// binary's cache, the one thing `plan` may write: `/var/lib/drover/agent/`
/// with its file, and `/var/lib/drover` itself as its parent (its mode,
/// owner and every other entry are still compared).
fn snapshot(f: &Fleet, i: usize) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in ["/var/lib/drover", "/srv", "/etc/motd", "/etc/sv", "/etc/service"] {
        tree(&f.host_file(i, p), &mut out);
    }
    let cache = f.host_file(i, "/var/lib/drover/agent").display().to_string();
    out.retain(|k, _| !k.starts_with(&cache));
    let state = f.host_file(i, "/var/lib/drover").display().to_string();
    let only_cache = !out.keys().any(|k| k.starts_with(&format!("{state}/")));
    if let Some(v) = out.get_mut(&state) {
        // Its mtime and size move when the cache directory appears in it.
        *v = v.split(' ').take(3).collect::<Vec<_>>().join(" ");
        if v.as_str() == "dir 40700 0:0" && only_cache {
            *v = "absent".into();
        }
    }
    for (p, (size, t)) in f.upper_snapshot(i) {
        if !p.to_string_lossy().contains("/var/lib/drover/agent/") {
            out.insert(format!("upper:{}", p.display()), format!("{size} {t}"));
        }
    }
    out
}

/// What differs between two snapshots of host `i`, one line per path.
fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, i: usize) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("h{}: {k}: {:?} -> {:?}", i + 1, a.get(k), b.get(k)))
        .collect()
}

/// SIGKILL every process of host `i` whose command line has all of `words`.
fn kill_host_processes(f: &Fleet, i: usize, words: &[&str]) -> usize {
    let out = Command::new("ip").args(["netns", "pids", &f.lab_hosts()[i].netns]).output().unwrap();
    let mut n = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let cmd =
            String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ");
        if words.iter().all(|w| cmd.contains(w)) {
            let _ = Command::new("kill").args(["-9", pid]).status();
            n += 1;
        }
    }
    n
}

fn state(f: &Fleet, i: usize) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(f.host_file(i, "/var/lib/drover/state.json")).unwrap()).unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "agent-test-hooks"),
    ignore = "needs the agent's fault-injection points: bash scripts/test, or --features drover/agent-test-hooks"
)]
fn plan_changes_nothing_on_a_fresh_host_or_one_whose_pending_generation_expired() {
    let f = Fleet::new("plan-ro", 2);
    // h2: generation 1 activated, then agent, watchdog and controller all
    // killed while it awaited confirmation (a reboot would do the same), and
    // its deadline passed. Any session that runs recovery reverts it.
    fs::create_dir_all(f.host_file(1, "/var/lib/drover")).unwrap();
    fs::write(f.host_file(1, "/var/lib/drover/test-hook"), "awaiting-confirm").unwrap();
    let mut apply = f.spawn_drover(&["apply", "--hosts", "h2", "--confirm-timeout", "3s"]);
    let start = Instant::now();
    while !f.host_file(1, "/var/lib/drover/test-hook.reached").exists() {
        assert!(start.elapsed() < Duration::from_secs(90), "h2 never reached awaiting-confirm");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(kill_host_processes(&f, 1, &["/agent-", " watchdog"]), 1, "the watchdog");
    assert!(f.kill_agent(1) >= 1);
    apply.kill().unwrap();
    apply.wait().unwrap();
    fs::remove_file(f.host_file(1, "/var/lib/drover/test-hook")).unwrap();
    fs::remove_file(f.host_file(1, "/var/lib/drover/test-hook.reached")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(f.host_file(1, "/var/lib/drover/pending.json").exists());
    assert_eq!(state(&f, 1)["current"], 1);
    assert!(!f.host_file(0, "/var/lib/drover/state.json").exists(), "h1 was never applied to");

    let before: Vec<_> = (0..2).map(|i| snapshot(&f, i)).collect();
    for args in [&["plan", "--json"][..], &["plan", "--diff", "--json"][..]] {
        let r = f.drover(args);
        let changed: Vec<String> = (0..2).flat_map(|i| differences(&before[i], &snapshot(&f, i), i)).collect();
        assert!(changed.is_empty(), "`{}` changed the hosts:\n{}", args.join(" "), changed.join("\n"));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let hosts = r.hosts();
        assert_eq!(hosts[0]["outcome"], "planned", "{}", r.stdout);
        assert!(hosts[0]["changes"].as_array().unwrap().iter().any(|c| c["path"] == "/srv/site/index.html"));
        assert_eq!(hosts[1]["recovered"], serde_json::Value::Null, "plan ran recovery on h2: {}", r.stdout);
    }
    assert!(!f.host_file(0, "/var/lib/drover/state.json").exists());
    assert_eq!(state(&f, 1)["current"], 1, "the pending generation was reverted by plan");

    // The next session that may change the host does recover it.
    let r = f.apply_json(&["--hosts", "h2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.hosts()[0]["recovered"].as_str().unwrap_or("").contains("reverted"), "{}", r.stdout);
}

#[test]
fn plan_diff_shows_host_content_modes_and_restarts_and_exit_code_tells_pending() {
    let f = Fleet::new("plan-diff", 1);
    let p = f.project();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = f.drover(&["plan", "--exit-code"]);
    assert_eq!(r.code, 0, "nothing to do must exit 0: {}\n{}", r.stdout, r.stderr);

    // Drift on the host, a template change (restarts web), a mode change, a
    // new binary file and a new symlink in the project.
    fs::write(f.host_file(0, "/etc/motd"), "edited on the host\n").unwrap();
    let tpl = p.join("layers/site/srv/site/index.html.j2");
    fs::write(&tpl, fs::read_to_string(&tpl).unwrap().replace("<h1>", "<h1>v2 ")).unwrap();
    let role = p.join("roles/site.toml");
    fs::write(
        &role,
        format!("{}\n[files]\n\"/etc/motd\" = {{ mode = \"0600\" }}\n", fs::read_to_string(&role).unwrap()),
    )
    .unwrap();
    fs::create_dir_all(p.join("layers/site/opt")).unwrap();
    fs::write(p.join("layers/site/opt/blob.bin"), b"\0\x01\x02binary").unwrap();
    std::os::unix::fs::symlink("/srv/site", p.join("layers/site/opt/site")).unwrap();

    let before = snapshot(&f, 0);
    let r = f.drover(&["plan", "--diff", "--json", "--exit-code"]);
    assert_eq!(r.code, 2, "changes pending must exit 2: {}\n{}", r.stdout, r.stderr);
    assert_eq!(before, snapshot(&f, 0), "plan --diff changed the host");
    let h = &r.hosts()[0];
    assert_eq!(h["restarts"], serde_json::json!(["web"]), "{h}");
    let diffs = h["diffs"].as_array().unwrap_or_else(|| panic!("no diffs: {h}"));
    let by_path = |path: &str| diffs.iter().find(|d| d["path"] == path).unwrap_or_else(|| panic!("{path}: {h}"));

    let motd = by_path("/etc/motd");
    let u = motd["unified"].as_str().unwrap();
    assert!(u.contains("-edited on the host\n"), "the host side must be the host's real content: {u}");
    assert!(u.contains("+++ project:/etc/motd"), "{u}");
    assert_eq!(motd["attributes"], serde_json::json!(["mode 0644 -> 0600"]), "{motd}");

    let index = by_path("/srv/site/index.html");
    assert!(index["unified"].as_str().unwrap().contains("+<h1>v2 "), "{index}");

    let blob = by_path("/opt/blob.bin");
    assert_eq!(blob["kind"], "Add");
    assert!(blob["unified"].is_null(), "{blob}");
    assert!(blob["content_note"].as_str().unwrap().starts_with("binary content differs"), "{blob}");

    let link = by_path("/opt/site");
    assert_eq!(link["after"], "symlink -> /srv/site", "{link}");

    // The same for people.
    let r = f.drover(&["plan", "--diff"]);
    assert_eq!(r.code, 0, "without --exit-code a plan that ran is 0: {}", r.stderr);
    for want in
        ["=== h1", "-edited on the host", "+<h1>v2 ", "mode 0644 -> 0600", "binary content differs", "services: web"]
    {
        assert!(r.stdout.contains(want), "{want:?} missing from:\n{}", r.stdout);
    }

    // Applied, nothing is pending; a host that cannot be reached is an error.
    assert_eq!(f.apply_json(&[]).code, 0);
    assert_eq!(f.drover(&["plan", "--exit-code"]).code, 0);
    let inv = p.join("inventory.toml");
    let mut text = fs::read_to_string(&inv).unwrap();
    text.push_str("\n[hosts.gone]\naddress = \"127.0.0.1\"\nport = 1\n");
    fs::write(&inv, text).unwrap();
    let r = f.drover(&["plan", "--exit-code", "--retries", "0"]);
    assert_eq!(r.code, 1, "an unreachable host must exit 1: {}\n{}", r.stdout, r.stderr);
}

/// `plan --bundle` diffs through `BundleDiff`, which a read-only session
/// must answer; the project's side comes from the bundle's compressed blobs.
/// Simulated host (a directory served by the real agent), no lab needed.
#[test]
fn plan_from_a_signed_bundle_is_read_only_and_diffs_the_bundle_content() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = |args: &[&str]| crate::support::drover_at(t, args);
    let ok = |r: crate::support::Run| {
        crate::support::ok(&r);
        r
    };
    ok(run(&["init", "proj"]));
    fs::write(t.join("proj/inventory.toml"), "[hosts.s1]\naddress = \"10.97.0.1\"\n").unwrap();
    ok(run(&["-C", "proj", "apply", "--simulate", "hosts"]));
    fs::write(t.join("proj/layers/site/etc/motd"), "from the bundle\n").unwrap();
    ok(run(&["-C", "proj", "bundle", "build", "-o", "b.drover"]));
    ok(run(&["bundle", "keygen", "--key", "k.key", "--pub", "k.pub"]));
    ok(run(&["bundle", "sign", "b.drover", "--key", "k.key"]));
    let mut before = BTreeMap::new();
    tree(&t.join("hosts/s1"), &mut before);
    let plan = ["-C", "proj", "plan", "--bundle", "b.drover", "--pubkey", "k.pub", "--simulate", "hosts", "--diff"];
    let r = run(&[&plan[..], &["--json", "--exit-code"]].concat());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let mut after = BTreeMap::new();
    tree(&t.join("hosts/s1"), &mut after);
    assert_eq!(before, after, "plan --bundle changed the host");
    let diffs = &r.hosts()[0]["diffs"];
    assert_eq!(diffs[0]["path"], "/etc/motd", "{diffs}");
    let u = diffs[0]["unified"].as_str().unwrap();
    assert!(u.contains("+from the bundle\n") && u.contains("-This host is managed by drover"), "{u}");
    assert_eq!(diffs[0]["attributes"], serde_json::json!([]), "no owner change on a host without /etc/passwd");
}

/// More changed paths than one `ReadPaths` may carry: read in batches, every
/// path diffed. Simulated host, no lab needed.
#[test]
fn plan_diff_reads_more_changed_paths_than_one_request_carries() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = |args: &[&str]| crate::support::drover_at(t, args);
    assert_eq!(run(&["init", "proj"]).code, 0);
    fs::write(t.join("proj/inventory.toml"), "[hosts.s1]\naddress = \"10.97.0.1\"\n").unwrap();
    let n = drover_proto::READ_PATHS_MAX * 2 + 3;
    fs::create_dir_all(t.join("proj/layers/site/opt/many")).unwrap();
    for i in 0..n {
        fs::write(t.join(format!("proj/layers/site/opt/many/f{i}")), format!("file {i}\n")).unwrap();
    }
    let r = run(&["-C", "proj", "plan", "--diff", "--json", "--simulate", "hosts"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let h = &r.hosts()[0];
    let diffs = h["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), h["changes"].as_array().unwrap().len());
    let many: Vec<_> = diffs.iter().filter(|d| d["path"].as_str().unwrap().starts_with("/opt/many/")).collect();
    assert_eq!(many.len(), n);
    for d in many {
        let i = d["path"].as_str().unwrap().trim_start_matches("/opt/many/f");
        assert!(d["unified"].as_str().unwrap().contains(&format!("+file {i}\n")), "{d}");
    }
}

/// Users and groups to create change no path: `plan` lists them in its
/// table and in `--diff`, not only in `--json` (issue 24, item 8).
/// Simulated host (its root has no /etc/passwd: every account is missing).
#[test]
fn plan_lists_users_and_groups_to_create_in_the_table_and_the_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = |args: &[&str]| crate::support::drover_at(t, args);
    crate::support::ok(&run(&["init", "proj"]));
    fs::write(t.join("proj/inventory.toml"), "[hosts.s1]\naddress = \"10.97.0.1\"\n").unwrap();
    crate::support::ok(&run(&["-C", "proj", "apply", "--simulate", "hosts"]));
    let role = t.join("proj/roles/site.toml");
    let text = fs::read_to_string(&role).unwrap();
    fs::write(&role, format!("{text}\n[groups.appgrp]\n\n[users.app]\ngroup = \"appgrp\"\n")).unwrap();
    let json = run(&["-C", "proj", "plan", "--simulate", "hosts", "--json"]);
    let setup = &json.hosts()[0]["setup"];
    assert_eq!(setup, &serde_json::json!(["group appgrp missing", "user app missing"]), "{}", json.stdout);
    let table = run(&["-C", "proj", "plan", "--simulate", "hosts"]);
    assert_eq!(table.code, 0, "{}\n{}", table.stdout, table.stderr);
    let row = table.stdout.lines().position(|l| l.starts_with("s1 ")).expect(&table.stdout);
    let below: Vec<&str> = table.stdout.lines().skip(row + 1).take(2).map(str::trim).collect();
    assert_eq!(below, ["* group appgrp missing", "* user app missing"], "{}", table.stdout);
    let diff = run(&["-C", "proj", "plan", "--simulate", "hosts", "--diff"]);
    let section = diff.stdout.split("=== s1").nth(1).unwrap_or_else(|| panic!("no section for s1:\n{}", diff.stdout));
    assert!(section.contains("* group appgrp missing\n* user app missing"), "{}", diff.stdout);
}
