//! Service instances through the real binary: `drover endpoints`, `drover
//! scale`, instance moves in `drover plan` (simulated hosts), and an
//! instance removed from a real lab host (runit): stopped, its unit gone.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{drover_in, write, Fleet, Run};

const NODE: &str = r#"# p2p nodes, placed over the fleet
command = "/usr/bin/node --name {{ instance.name }} --port {{ instance.ports.p2p }}"

[ports]
p2p = "30300-30399"   # one per instance
rpc = "8600-8699"

[placement]
count = 12   # a dozen
max-per-host = 4
pinned = ["s1"]
"#;

/// Role `node` (service `node`, /etc/p2p/peers.json from `fleet.services`) on s1..sN.
fn project(dir: &Path, hosts: usize) -> std::path::PathBuf {
    let p = dir.join("project");
    write(&p, "drover.toml", "[project]\nname = \"inst\"\n\n[apply]\nconfirm-timeout = \"0s\"\n");
    write(&p, "roles/node.toml", "layers = [\"node\"]\nservices = [\"node\"]\n");
    write(&p, "layers/node/etc/p2p/peers.json.j2", "{{ fleet.services | tojson }}\n");
    write(&p, "services/node.toml", NODE);
    inventory(&p, hosts);
    p
}

fn inventory(p: &Path, hosts: usize) {
    let inv: String =
        (1..=hosts).map(|i| format!("[hosts.s{i}]\naddress = \"10.9.0.{i}\"\nroles = [\"node\"]\n\n")).collect();
    fs::write(p.join("inventory.toml"), inv).unwrap();
}

fn ok(proj: &Path, args: &[&str]) -> Run {
    let r = drover_in(proj, args);
    assert_eq!(r.code, 0, "drover {args:?}\n{}\n{}", r.stdout, r.stderr);
    r
}

/// name → host, from `drover endpoints --json`.
fn placement(proj: &Path) -> std::collections::BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(&ok(proj, &["endpoints", "--json"]).stdout).unwrap();
    v["node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().into(), i["host"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn endpoints_json_is_every_instance_with_host_address_and_ports_as_templates_see_it() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 4);
    let v: serde_json::Value = serde_json::from_str(&ok(&proj, &["endpoints", "--json"]).stdout).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["node"]);
    let list = v["node"].as_array().unwrap();
    assert_eq!(list.len(), 12);
    for (i, inst) in list.iter().enumerate() {
        let keys: Vec<&String> = inst.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["address", "host", "index", "name", "ports", "service"]);
        assert_eq!(inst["index"], i);
        assert_eq!(inst["name"], format!("node-{i}"));
        assert_eq!(inst["service"], "node");
        let host = inst["host"].as_str().unwrap();
        assert_eq!(inst["address"], format!("10.9.0.{}", &host[1..]));
        assert_eq!(inst["ports"], serde_json::json!({ "p2p": 30300 + i, "rpc": 8600 + i }));
    }
    assert_eq!(list[0]["host"], "s1", "pinned");

    // The discovery file a template writes from `fleet.services` is the same data.
    let hosts = tmp.path().join("hosts");
    ok(&proj, &["apply", "--json", "--simulate", hosts.to_str().unwrap()]);
    let file: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(hosts.join("s2/etc/p2p/peers.json")).unwrap()).unwrap();
    assert_eq!(file, v);

    // One service, as a table; an unknown one names the known ones.
    let t = ok(&proj, &["endpoints", "node"]).stdout;
    assert!(t.starts_with("SERVICE  INSTANCE  HOST  ADDRESS   PORTS\n"), "{t}");
    assert!(t.contains("node     node-0    s1    10.9.0.1  p2p=30300 rpc=8600\n"), "{t}");
    let r = drover_in(&proj, &["endpoints", "web"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no service \"web\" runs on any host of the inventory (services: node)"), "{}", r.stderr);
}

#[test]
fn scale_edits_the_count_keeping_comments_and_prints_the_instance_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 6);
    let before = placement(&proj);
    let out = ok(&proj, &["scale", "node", "18"]).stdout;
    assert_eq!(
        fs::read_to_string(proj.join("services/node.toml")).unwrap(),
        NODE.replace("count = 12 ", "count = 18 ")
    );
    assert!(out.contains("placement.count 12 -> 18"), "{out}");
    let after = placement(&proj);
    for i in 12..18 {
        assert!(out.contains(&format!("  + node-{i} on {}\n", after[&format!("node-{i}")])), "{out}");
    }
    for (n, h) in &before {
        if &after[n] != h {
            assert!(out.contains(&format!("  > {n} moves {h} -> {}\n", after[n])), "{out}");
        }
    }
    assert!(out.contains("6 added, 0 removed"), "{out}");

    let out = ok(&proj, &["scale", "node", "9"]).stdout;
    for i in 9..18 {
        assert!(out.contains(&format!("  - node-{i} on {}\n", after[&format!("node-{i}")])), "{out}");
    }
    assert!(out.contains("0 added, 9 removed, 0 moved"), "{out}");

    // A count that cannot be placed is refused, and the file left as it was.
    let text = fs::read_to_string(proj.join("services/node.toml")).unwrap();
    let r = drover_in(&proj, &["scale", "node", "30"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("30 node instances need 8 hosts with max-per-host 4; 6"), "{}", r.stderr);
    assert!(r.stderr.contains("left unchanged"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(proj.join("services/node.toml")).unwrap(), text);
}

#[test]
fn plan_shows_the_instances_that_move_when_a_host_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 4);
    // Room to spare, so instances move only onto the new host.
    write(&proj, "services/node.toml", &NODE.replace("max-per-host = 4", "max-per-host = 8"));
    let hosts = tmp.path().join("hosts");
    let sim = hosts.to_str().unwrap();
    ok(&proj, &["apply", "--json", "--simulate", sim]);
    let before = placement(&proj);
    inventory(&proj, 5);
    let after = placement(&proj);
    let moved: Vec<&String> = before.keys().filter(|n| before[*n] != after[*n]).collect();
    assert!(!moved.is_empty(), "no instance prefers s5: pick another fixture");
    let out = drover_in(&proj, &["plan", "--simulate", sim]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for n in &moved {
        assert_eq!(after[*n], "s5");
        assert!(out.stdout.contains(&format!("  > {n} moves {} -> s5\n", before[*n])), "{}", out.stdout);
    }
    assert!(out.stdout.contains(&format!("0 added, 0 removed, {} moved", moved.len())), "{}", out.stdout);
    // The same in the JSON report.
    let v: serde_json::Value = serde_json::from_str(&ok(&proj, &["plan", "--json", "--simulate", sim]).stdout).unwrap();
    let json: Vec<(String, String, String)> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["change"], "moved");
            (c["name"].as_str().unwrap().into(), c["from"].as_str().unwrap().into(), c["to"].as_str().unwrap().into())
        })
        .collect();
    let mut want: Vec<(String, String, String)> =
        moved.iter().map(|n| (n.to_string(), before[*n].clone(), "s5".to_string())).collect();
    let mut got = json.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    // Applied, the moved instances' units are on s5 and gone from their old hosts.
    ok(&proj, &["apply", "--json", "--simulate", sim]);
    for n in &moved {
        assert!(fs::symlink_metadata(hosts.join(format!("s5/etc/service/{n}"))).is_ok(), "{n} not on s5");
        assert!(fs::symlink_metadata(hosts.join(format!("{}/etc/service/{n}", before[*n]))).is_err());
        assert!(!hosts.join(format!("{}/etc/sv/{n}/run", before[*n])).exists());
    }
    let out = ok(&proj, &["plan", "--simulate", sim]).stdout;
    assert!(!out.contains("instances:"), "{out}");
}

/// On a real runit host: scaling 3 → 1 stops node-1 and node-2 (their
/// processes end), removes their units, and leaves node-0 running untouched.
#[test]
fn an_instance_removed_is_stopped_and_its_unit_gone() {
    let f = Fleet::new("inst-rm", 1);
    let p = f.project();
    write(&p, "services/node.toml", "command = \"/bin/sleep {{ 100000 + instance.index }}\"\ninstances = 3\n");
    let role = p.join("roles/site.toml");
    fs::write(
        &role,
        fs::read_to_string(&role).unwrap().replace("services = [\"web\"]", "services = [\"web\", \"node\"]"),
    )
    .unwrap();
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let running = |f: &Fleet| f.host_sh(0, "pgrep -f '^/bin/sleep 10000[0-9]$' -a | sed 's/^[0-9]* //' | sort");
    assert_eq!(running(&f), "/bin/sleep 100000\n/bin/sleep 100001\n/bin/sleep 100002");
    let pid0 = f.service_pid(0, "node-0");
    assert!(!pid0.is_empty());

    ok(&p, &["scale", "node", "1"]);
    let plan = f.drover(&["plan", "--json"]);
    let mut restarts: Vec<String> =
        plan.hosts()[0]["restarts"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    restarts.sort();
    assert_eq!(restarts, ["node-1:stop", "node-2:stop"], "only the removed instances stop; nothing restarts");
    let r = f.apply_json(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(running(&f), "/bin/sleep 100000");
    for n in ["node-1", "node-2"] {
        assert!(fs::symlink_metadata(f.host_file(0, &format!("/etc/service/{n}"))).is_err(), "{n} still linked");
        assert!(!f.host_file(0, &format!("/etc/sv/{n}/run")).exists(), "{n} unit left");
        assert!(!f.host_file(0, &format!("/etc/sv/{n}/log/run")).exists(), "{n} logger left");
    }
    // runsvdir lets the removed services' runsv go (within its 5 s scan).
    let start = Instant::now();
    while !f.host_sh(0, "pgrep -f '^runsv node-[12]$' || true").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "runsv of a removed instance still runs");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(f.service_pid(0, "node-0"), pid0, "node-0 was restarted");
    assert_eq!(f.apply_json(&[]).hosts()[0]["outcome"], "unchanged");
}

#[test]
fn an_impossible_placement_stops_apply_before_any_host_is_contacted() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = project(tmp.path(), 3);
    write(&proj, "services/node.toml", &NODE.replace("count = 12", "count = 13"));
    let hosts = tmp.path().join("hosts");
    let r = drover_in(&proj, &["apply", "--simulate", hosts.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("13 node instances need 4 hosts with max-per-host 4; 3"), "{}", r.stderr);
    assert!(!hosts.exists(), "a host was contacted");
}
