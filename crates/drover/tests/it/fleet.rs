//! `fleet` in templates, through the real binary on simulated hosts: a
//! change in membership re-renders exactly the files whose output changed,
//! on every host, in one apply, and restarts exactly the services whose
//! inputs changed; other hosts' facts come from the fact cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{write, Run, DROVER};

/// Every host has role `node` (/etc/hosts from the whole fleet, and
/// /etc/app/app.conf from its own name, which restarts `app`). Role `etcd`
/// adds /etc/etcd/members (the etcd hosts; restarts `etcd`); role `lb`
/// adds /etc/lb/backends (every node; restarts `lb`).
fn project(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("project");
    write(&p, "drover.toml", "[project]\nname = \"fleet\"\n\n[apply]\nconfirm-timeout = \"0s\"\n");
    write(&p, "roles/node.toml", "layers = [\"node\"]\nservices = [\"app\"]\n");
    write(&p, "roles/etcd.toml", "layers = [\"etcd\"]\nservices = [\"etcd\"]\n");
    write(&p, "roles/lb.toml", "layers = [\"lb\"]\nservices = [\"lb\"]\n");
    for s in ["app", "etcd", "lb"] {
        write(
            &p,
            &format!("services/{s}.toml"),
            &format!("command = \"/bin/sleep 1d\"\nrestart-on = [\"/etc/{s}/**\"]\n"),
        );
    }
    write(
        &p,
        "layers/node/etc/hosts.j2",
        "127.0.0.1 localhost\n{% for h in fleet.hosts %}{{ h.address }} {{ h.name }}\n{% endfor %}",
    );
    write(&p, "layers/node/etc/app/app.conf.j2", "name = {{ host.name }}\n");
    write(
        &p,
        "layers/etcd/etc/etcd/members.j2",
        "{% for h in fleet.roles.etcd %}{{ h.name }}=http://{{ h.address }}:2380{% if not loop.last %},{% endif %}{% endfor %}\n",
    );
    write(
        &p,
        "layers/lb/etc/lb/backends.j2",
        "{% for h in fleet.roles.node if 'lb' not in h.roles %}server {{ h.name }} {{ h.address }}:8080\n{% endfor %}",
    );
    p
}

/// s1..s3: node + etcd; s4: node + lb; then whatever `extra` adds.
fn inventory(proj: &Path, extra: &str) {
    let mut inv = String::new();
    for i in 1..=3 {
        inv.push_str(&format!("[hosts.s{i}]\naddress = \"10.9.0.{i}\"\nroles = [\"node\", \"etcd\"]\n\n"));
    }
    inv.push_str("[hosts.s4]\naddress = \"10.9.0.4\"\nroles = [\"node\", \"lb\"]\n\n");
    inv.push_str(extra);
    fs::write(proj.join("inventory.toml"), inv).unwrap();
}

fn drover(proj: &Path, hosts: &Path, args: &[&str]) -> Run {
    let out = Command::new(DROVER)
        .arg("-C")
        .arg(proj)
        .args(args)
        .arg("--simulate")
        .arg(hosts)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(out)
}

fn apply(proj: &Path, hosts: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["apply", "--json"];
    args.extend_from_slice(extra);
    let run = drover(proj, hosts, &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run
}

/// Per host: (outcome, changed paths, restarted services), all sorted.
fn summary(run: &Run) -> BTreeMap<String, (String, Vec<String>, Vec<String>)> {
    run.hosts()
        .iter()
        .map(|h| {
            let mut paths: Vec<String> =
                h["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap().to_string()).collect();
            paths.sort();
            let mut restarts: Vec<String> =
                h["restarts"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            restarts.sort();
            (h["host"].as_str().unwrap().to_string(), (h["outcome"].as_str().unwrap().to_string(), paths, restarts))
        })
        .collect()
}

fn row(outcome: &str, paths: &[&str], restarts: &[&str]) -> (String, Vec<String>, Vec<String>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    (outcome.to_string(), s(paths), s(restarts))
}

fn read(hosts: &Path, host: &str, path: &str) -> String {
    fs::read_to_string(hosts.join(host).join(path.trim_start_matches('/'))).unwrap()
}

#[test]
fn adding_moving_and_removing_a_host_rerenders_exactly_what_changed_on_every_host() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path());
    let hosts = tmp.path().join("hosts");
    inventory(&proj, "");
    apply(&proj, &hosts, &[]);
    let members = "s1=http://10.9.0.1:2380,s2=http://10.9.0.2:2380,s3=http://10.9.0.3:2380\n";
    assert_eq!(read(&hosts, "s2", "/etc/etcd/members"), members);
    assert_eq!(
        read(&hosts, "s4", "/etc/lb/backends"),
        "server s1 10.9.0.1:8080\nserver s2 10.9.0.2:8080\nserver s3 10.9.0.3:8080\n"
    );

    // A host is added (a plain node): every host's /etc/hosts lists it and the
    // load balancer gains a backend (restarting lb); nothing else changes.
    inventory(&proj, "[hosts.s5]\naddress = \"10.9.0.5\"\nroles = [\"node\"]\n");
    let added = summary(&apply(&proj, &hosts, &[]));
    let hosts_only = row("changed", &["/etc/hosts"], &[]);
    assert_eq!(added["s1"], hosts_only);
    assert_eq!(added["s2"], hosts_only);
    assert_eq!(added["s3"], hosts_only);
    assert_eq!(added["s4"], row("changed", &["/etc/hosts", "/etc/lb/backends"], &["lb"]));
    assert_eq!(added["s5"].0, "changed");
    assert_eq!(added["s5"].2, vec!["app".to_string()], "the new host starts its own service only");
    for h in ["s1", "s2", "s3", "s4", "s5"] {
        assert!(read(&hosts, h, "/etc/hosts").ends_with("10.9.0.4 s4\n10.9.0.5 s5\n"), "{h}");
        assert_eq!(read(&hosts, h, "/etc/app/app.conf"), format!("name = {h}\n"));
    }
    assert!(read(&hosts, "s4", "/etc/lb/backends").ends_with("server s5 10.9.0.5:8080\n"));
    assert_eq!(read(&hosts, "s1", "/etc/etcd/members"), members, "etcd membership did not change");

    // A role moves: s5 joins etcd. Only the etcd members' file changes, on
    // every etcd host, and only etcd restarts; the load balancer is untouched.
    inventory(&proj, "[hosts.s5]\naddress = \"10.9.0.5\"\nroles = [\"node\", \"etcd\"]\n");
    let moved = summary(&apply(&proj, &hosts, &[]));
    let members_only = row("changed", &["/etc/etcd/members"], &["etcd"]);
    assert_eq!(moved["s1"], members_only);
    assert_eq!(moved["s2"], members_only);
    assert_eq!(moved["s3"], members_only);
    assert_eq!(moved["s4"], row("unchanged", &[], &[]));
    let etcd_unit = ["/etc/etcd/members", "/etc/service/etcd", "/etc/sv/etcd/log/run", "/etc/sv/etcd/run"];
    assert_eq!(moved["s5"], row("changed", &etcd_unit, &["etcd"]), "s5 gains the file and the service");
    let five = "s1=http://10.9.0.1:2380,s2=http://10.9.0.2:2380,s3=http://10.9.0.3:2380,s5=http://10.9.0.5:2380\n";
    for h in ["s1", "s2", "s3", "s5"] {
        assert_eq!(read(&hosts, h, "/etc/etcd/members"), five, "{h}");
    }

    // A partial apply renders what a full one would: `fleet` is the whole
    // inventory whatever --hosts selects.
    inventory(&proj, "[hosts.s5]\naddress = \"10.9.0.5\"\nroles = [\"node\", \"etcd\"]\n\n[hosts.s6]\naddress = \"10.9.0.6\"\nroles = [\"node\"]\n");
    let partial = summary(&apply(&proj, &hosts, &["--hosts", "s1"]));
    assert_eq!(partial.keys().collect::<Vec<_>>(), vec!["s1"]);
    assert!(read(&hosts, "s1", "/etc/hosts").ends_with("10.9.0.6 s6\n"));

    // The host is removed again (s5 and s6 leave): every remaining host drops
    // them, etcd restarts on the etcd hosts, lb on the load balancer.
    inventory(&proj, "");
    let removed = summary(&apply(&proj, &hosts, &[]));
    assert_eq!(removed.keys().collect::<Vec<_>>(), vec!["s1", "s2", "s3", "s4"]);
    assert_eq!(removed["s1"], row("changed", &["/etc/etcd/members", "/etc/hosts"], &["etcd"]));
    assert_eq!(removed["s2"], row("changed", &["/etc/etcd/members", "/etc/hosts"], &["etcd"]));
    assert_eq!(removed["s3"], row("changed", &["/etc/etcd/members", "/etc/hosts"], &["etcd"]));
    assert_eq!(removed["s4"], row("changed", &["/etc/hosts", "/etc/lb/backends"], &["lb"]));
    for h in ["s1", "s2", "s3", "s4"] {
        assert!(read(&hosts, h, "/etc/hosts").ends_with("10.9.0.4 s4\n"), "{h}");
    }
    assert_eq!(read(&hosts, "s2", "/etc/etcd/members"), members);

    // And the fleet is settled: a second apply changes nothing anywhere.
    let again = summary(&apply(&proj, &hosts, &[]));
    assert!(again.values().all(|r| *r == row("unchanged", &[], &[])), "{again:?}");
}

#[test]
fn another_hosts_missing_fact_stops_the_run_naming_host_and_template_until_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path());
    let hosts = tmp.path().join("hosts");
    inventory(&proj, "");
    write(
        &proj,
        "layers/etcd/etc/etcd/quota.j2",
        "# per member\n{% for h in fleet.roles.etcd %}{{ h.name }} {{ h.facts.cpus }}\n{% endfor %}",
    );
    let run = drover(&proj, &hosts, &["apply"]);
    assert_eq!(run.code, 1, "refused before any host is touched: {}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("host s1 has no cached facts"), "{}", run.stderr);
    assert!(run.stderr.contains("etc/etcd/quota.j2:2"), "names template and line: {}", run.stderr);
    assert!(!hosts.join("s1/etc/etcd").exists(), "nothing was applied");

    // `drover status` contacts the hosts and caches their facts; then it applies.
    drover(&proj, &hosts, &["status"]);
    apply(&proj, &hosts, &[]);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let quota = read(&hosts, "s3", "/etc/etcd/quota");
    assert!(quota.starts_with("# per member\ns1 "), "{quota}");
    assert_eq!(quota.lines().count(), 4, "{quota}");
    assert!(quota.lines().skip(1).all(|l| l.split(' ').nth(1).unwrap().parse::<usize>().is_ok()), "{quota} ({cpus})");
}
