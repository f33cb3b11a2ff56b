//! Service instances, ports and placement, through `Project::load` and
//! `Project::compile` on real project directories.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use drover_proto::{EntryKind, Facts, HealthProbe, Supervisor};
use drover_spec::{Instance, Project};

use crate::support::write;

fn facts(name: &str) -> Facts {
    Facts {
        hostname: name.into(),
        supervisor: Some(Supervisor::Runit),
        cpus: 4,
        mem_bytes: 8 << 30,
        ..Default::default()
    }
}

/// Roles `node` (service `node`, a discovery file from `fleet.services`) on
/// hosts h1..hN; `service` is services/node.toml.
fn project(hosts: usize, service: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(d, "drover.toml", "[project]\nname = \"p\"\n");
    write(d, "roles/node.toml", "layers = [\"node\"]\nservices = [\"node\"]\n");
    write(d, "layers/node/etc/p2p/peers.json.j2", "{{ fleet.services | tojson }}\n");
    write(d, "services/node.toml", service);
    inventory(d, hosts, "");
    t
}

fn inventory(d: &Path, hosts: usize, extra: &str) {
    let mut inv = String::new();
    for i in 1..=hosts {
        inv.push_str(&format!(
            "[hosts.h{i}]\naddress = \"10.0.0.{i}\"\nroles = [\"node\"]\n[hosts.h{i}.vars]\nrack = \"r{}\"\n\n",
            i % 3
        ));
    }
    inv.push_str(extra);
    write(d, "inventory.toml", &inv);
}

fn load(d: &Path) -> Project {
    let mut p = Project::load(d).unwrap_or_else(|e| panic!("{e:?}"));
    let cache: HashMap<String, Facts> = p.hosts.iter().map(|h| (h.name.clone(), facts(&h.name))).collect();
    p.set_fact_cache(cache);
    p
}

fn error(d: &Path) -> String {
    let p = match Project::load(d) {
        Err(e) => return format!("{e}\n{:?}", e.help),
        Ok(p) => p,
    };
    let mut p = p;
    let cache: HashMap<String, Facts> = p.hosts.iter().map(|h| (h.name.clone(), facts(&h.name))).collect();
    p.set_fact_cache(cache);
    match p.endpoints() {
        Err(e) => format!("{e}\n{:?}", e.help),
        Ok(_) => panic!("expected an error"),
    }
}

fn compile(p: &Project, host: &str) -> drover_spec::Compiled {
    let h = p.hosts.iter().find(|h| h.name == host).unwrap();
    p.compile(h, &facts(host), 1).unwrap_or_else(|e| panic!("{e:?}"))
}

fn content(p: &Project, c: &drover_spec::Compiled, path: &str) -> String {
    let _ = p;
    let e = c.manifest.entry(path).unwrap_or_else(|| panic!("{path} not in manifest"));
    let EntryKind::File { hash, .. } = &e.kind else { panic!("{path} not a file") };
    match &c.blobs[hash] {
        drover_spec::BlobSource::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
        drover_spec::BlobSource::File(f) => fs::read_to_string(f).unwrap(),
    }
}

const FIXED: &str = r#"# two per host
command = "/usr/bin/node --name {{ instance.name }} --port {{ instance.ports.p2p }} --host {{ host.name }}"
instances = 2
env = { RPC = "{{ instance.ports.rpc }}", PLAIN = "x" }
restart-on = ["/etc/p2p/**"]

[ports]
p2p = "30300-30399"
rpc = "8600-8699"

[health]
http = "http://127.0.0.1:{{ instance.ports.rpc }}/health"
"#;

#[test]
fn fixed_instances_get_names_ports_units_health_and_fleet_services() {
    let t = project(2, FIXED);
    let p = load(t.path());
    let c = compile(&p, "h2");
    let names: Vec<&str> = c.manifest.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["node-0", "node-1"]);
    let run = content(&p, &c, "/etc/sv/node-1/run");
    assert!(run.contains("/usr/bin/node --name node-1 --port 30301 --host h2"), "{run}");
    assert!(run.contains("export RPC='8601'") && run.contains("export PLAIN='x'"), "{run}");
    let s1 = &c.manifest.services[1];
    assert_eq!(s1.health.as_ref().unwrap().probe, HealthProbe::Http { url: "http://127.0.0.1:8601/health".into() });
    // Each instance restarts on the restart-on paths and its own units only.
    assert!(s1.triggers.contains(&"/etc/p2p/peers.json".to_string()));
    assert!(s1.triggers.contains(&"/etc/sv/node-1/run".to_string()));
    assert!(!s1.triggers.iter().any(|t| t.contains("node-0")), "{:?}", s1.triggers);
    assert!(matches!(c.manifest.entry("/etc/service/node-0").unwrap().kind, EntryKind::Symlink { .. }));

    // fleet.services: every instance, by index then host, with ports; and
    // the same JSON as `endpoints`.
    let peers: serde_json::Value = serde_json::from_str(&content(&p, &c, "/etc/p2p/peers.json")).unwrap();
    let endpoints = serde_json::to_value(p.endpoints().unwrap()).unwrap();
    assert_eq!(peers, endpoints);
    let list: Vec<Instance> = serde_json::from_value(peers["node"].clone()).unwrap();
    let order: Vec<(String, String)> = list.iter().map(|i| (i.name.clone(), i.host.clone())).collect();
    let want = [("node-0", "h1"), ("node-0", "h2"), ("node-1", "h1"), ("node-1", "h2")];
    assert_eq!(order, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(list[3].address, "10.0.0.2");
    assert_eq!(list[3].ports["p2p"], 30301);
    assert_eq!(list[3].service, "node");
}

const PLACED: &str = r#"command = "/usr/bin/node {{ instance.index }} {{ instance.ports.p2p }}"

[ports]
p2p = "30300-30399"

[placement]
count = 12
max-per-host = 4
pinned = ["h3"]
"#;

fn placement(p: &Project) -> Vec<(String, String, u16)> {
    p.endpoints().unwrap()["node"].iter().map(|i| (i.name.clone(), i.host.clone(), i.ports["p2p"])).collect()
}

#[test]
fn placed_instances_run_on_their_hosts_only_and_keep_their_ports_across_applies() {
    let t = project(4, PLACED);
    let p = load(t.path());
    let placed = placement(&p);
    assert_eq!(placed.len(), 12);
    assert_eq!(placed[0].1, "h3", "instance 0 is pinned to h3");
    for (i, (name, host, port)) in placed.iter().enumerate() {
        assert_eq!(name, &format!("node-{i}"));
        assert_eq!(*port, 30300 + i as u16, "range covers the count: port = start + index");
        let c = compile(&p, host);
        assert!(c.manifest.services.iter().any(|s| &s.name == name), "{name} not on {host}");
        assert!(content(&p, &c, &format!("/etc/sv/{name}/run")).contains(&format!("/usr/bin/node {i} {port}")));
    }
    for h in ["h1", "h2", "h3", "h4"] {
        let n = compile(&p, h).manifest.services.len();
        assert!(n <= 4, "{h} runs {n} > max-per-host");
        assert_eq!(n, placed.iter().filter(|x| x.1 == h).count());
    }
    // Same project again: same placement, same ports, same manifests.
    let again = load(t.path());
    assert_eq!(placement(&again), placed);
    assert_eq!(compile(&again, "h1").manifest.hash(), compile(&p, "h1").manifest.hash());

    // Scaling up adds node-12..: everything that was placed keeps host and port.
    fs::write(t.path().join("services/node.toml"), PLACED.replace("count = 12", "count = 15")).unwrap();
    let up = placement(&load(t.path()));
    assert_eq!(&up[..12], &placed[..]);
    // A host added: some instances move (onto it, or into room it freed:
    // 15 of 16 places were taken), and every instance keeps its port.
    inventory(t.path(), 5, "");
    let wider = placement(&load(t.path()));
    assert!(wider.iter().any(|x| x.1 == "h5"));
    for (a, b) in up.iter().zip(&wider) {
        assert_eq!((&a.0, a.2), (&b.0, b.2));
    }
    // Without capacity pressure, instances move only onto the new host.
    fs::write(t.path().join("services/node.toml"), PLACED.replace("max-per-host = 4", "max-per-host = 12")).unwrap();
    inventory(t.path(), 4, "");
    let roomy = placement(&load(t.path()));
    inventory(t.path(), 5, "");
    for (a, b) in roomy.iter().zip(&placement(&load(t.path()))) {
        assert!(a == b || (b.1 == "h5" && a.0 == b.0 && a.2 == b.2), "{a:?} -> {b:?}");
    }
}

#[test]
fn impossible_placement_is_refused_with_the_shortfall() {
    let svc = "command = \"/bin/node\"\n[placement]\ncount = 30\nmax-per-host = 4\nrequires = { cpus = 2 }\n";
    let t = project(8, svc);
    let mut p = Project::load(t.path()).unwrap();
    let mut cache: HashMap<String, Facts> = p.hosts.iter().map(|h| (h.name.clone(), facts(&h.name))).collect();
    cache.get_mut("h1").unwrap().cpus = 1;
    cache.get_mut("h2").unwrap().cpus = 1;
    p.set_fact_cache(cache);
    let e = p.endpoints().unwrap_err();
    assert_eq!(
        e.message,
        "services/node.toml: 30 node instances need 8 hosts with max-per-host 4; 6 match (2 lack cpus >= 2)"
    );
    assert!(e.help.as_deref().unwrap().contains("drover scale node N"), "{:?}", e.help);
    // compile (which every run does for every host before contacting any) refuses too.
    let h = &p.hosts[2];
    assert_eq!(p.compile(h, &facts("h3"), 1).err().unwrap().message, e.message);

    // Hosts never contacted have no facts: said so, with what to do.
    let mut p = Project::load(t.path()).unwrap();
    p.set_fact_cache(HashMap::new());
    let e = p.endpoints().unwrap_err();
    assert!(e.message.ends_with("0 match (8 have no cached facts)"), "{}", e.message);
    assert!(e.help.as_deref().unwrap().contains("drover status"), "{:?}", e.help);
}

#[test]
fn bad_port_ranges_are_refused_at_their_line() {
    let t = project(1, "command = \"/bin/node\"\n\n[ports]\np2p = \"30399-30300\"\n");
    let e = error(t.path());
    assert!(e.contains("services/node.toml:4: port range p2p: \"30399-30300\" runs backwards"), "{e}");
    let t = project(1, "command = \"/bin/node\"\n\n[ports]\np2p = \"99999\"\n");
    assert!(error(t.path()).contains("services/node.toml:4: port range p2p: \"99999\" is not a port"));
}

#[test]
fn a_port_range_too_small_for_a_hosts_instances_is_refused() {
    let t = project(2, "command = \"/bin/node\"\ninstances = 3\n\n[ports]\np2p = \"30300-30301\"\n");
    let e = error(t.path());
    assert!(
        e.contains("services/node.toml: port range p2p = \"30300-30301\" (2 ports) is too small for the 3 node instances on host h1"),
        "{e}"
    );
    assert!(e.contains("widen [ports] p2p to at least 3 ports"), "{e}");
}

#[test]
fn overlapping_port_ranges_on_one_host_are_refused() {
    let t = project(1, "command = \"/bin/node\"\ninstances = 2\n\n[ports]\na = \"9000-9009\"\nb = \"9001-9010\"\n");
    let e = error(t.path());
    assert!(e.contains("host h1: port 9001 is given to both node-0 (b) and node-1 (a)"), "{e}");
}

#[test]
fn unknown_spread_var_names_the_host_and_the_fix() {
    let t = project(3, "command = \"/bin/node\"\n[placement]\ncount = 3\nspread = \"region\"\n");
    let e = error(t.path());
    assert!(
        e.contains("services/node.toml:4: spread = \"region\": host h1 (which runs node) has no var \"region\""),
        "{e}"
    );
    assert!(e.contains("give every host that runs node a `region` var"), "{e}");
}

#[test]
fn spread_by_var_balances_racks() {
    let t = project(6, "command = \"/bin/node\"\n[placement]\ncount = 9\nspread = \"rack\"\n");
    let p = load(t.path());
    let mut per_rack = [0; 3];
    for i in &p.endpoints().unwrap()["node"] {
        let n: usize = i.host[1..].parse().unwrap();
        per_rack[n % 3] += 1;
    }
    assert_eq!(per_rack, [3, 3, 3]);
}

#[test]
fn a_pinned_host_without_the_role_is_refused() {
    let t = project(2, "command = \"/bin/node\"\n[placement]\ncount = 2\npinned = [\"h1\", \"db1\"]\n");
    inventory(t.path(), 2, "[hosts.db1]\naddress = \"10.0.1.1\"\nroles = [\"db\"]\n");
    write(t.path(), "roles/db.toml", "");
    let e = error(t.path());
    assert!(e.contains("services/node.toml:4: pinned host db1 has no role that runs node (its roles: db)"), "{e}");
    let t = project(2, "command = \"/bin/node\"\n[placement]\ncount = 2\npinned = [\"nope\"]\n");
    assert!(error(t.path()).contains("pinned host nope is not in the inventory"));
}

#[test]
fn instances_and_placement_together_or_on_a_unit_are_refused() {
    let t = project(1, "command = \"/bin/node\"\ninstances = 2\n[placement]\ncount = 2\n");
    assert!(error(t.path()).contains("a service has `instances` or `[placement]`, not both"));
    let t = project(1, "unit = \"ssh\"\ninstances = 2\n");
    assert!(error(t.path()).contains("need a service drover runs (`command`)"));
}

#[test]
fn an_undefined_variable_in_a_command_names_the_file_and_instance() {
    let t = project(1, "command = \"/bin/node {{ instance.ports.nope }}\"\ninstances = 1\n");
    let p = load(t.path());
    let e = p.compile(&p.hosts[0], &facts("h1"), 1).err().unwrap();
    assert!(e.message.starts_with("services/node.toml: command: undefined value"), "{}", e.message);
    assert!(e.message.contains("rendering instance node-0 for host h1"), "{}", e.message);
}

#[test]
fn a_plain_service_is_one_per_host_named_as_the_service() {
    let t = project(2, "command = \"/bin/node\"\n");
    let p = load(t.path());
    let c = compile(&p, "h1");
    assert_eq!(c.manifest.services.len(), 1);
    assert_eq!(c.manifest.services[0].name, "node");
    let names: Vec<(String, u32, String)> =
        p.endpoints().unwrap()["node"].iter().map(|i| (i.name.clone(), i.index, i.host.clone())).collect();
    assert_eq!(names, [("node".into(), 0, "h1".into()), ("node".into(), 0, "h2".into())]);
}

#[test]
fn a_tcp_health_check_can_be_an_instance_port() {
    let t = project(1, "command = \"/bin/node\"\ninstances = 2\n[ports]\np2p = \"30300-30309\"\n[health]\ntcp = \"{{ instance.ports.p2p }}\"\n");
    let p = load(t.path());
    let c = compile(&p, "h1");
    let probes: Vec<&HealthProbe> = c.manifest.services.iter().map(|s| &s.health.as_ref().unwrap().probe).collect();
    assert_eq!(probes, [&HealthProbe::Tcp { port: 30300 }, &HealthProbe::Tcp { port: 30301 }]);
    let t = project(1, "command = \"/bin/node\"\n[health]\ntcp = \"8080\"\n");
    assert!(error(t.path()).contains("services/node.toml:2: tcp = \"8080\": a port is a number"));
}

#[test]
fn requires_keeps_instances_off_hosts_that_lack_it() {
    let svc = "command = \"/bin/node\"\n[placement]\ncount = 12\nrequires = { cpus = 2, mem = \"4GiB\" }\n";
    let t = project(6, svc);
    let mut p = Project::load(t.path()).unwrap();
    let mut cache: HashMap<String, Facts> = p.hosts.iter().map(|h| (h.name.clone(), facts(&h.name))).collect();
    cache.get_mut("h2").unwrap().cpus = 1;
    cache.get_mut("h4").unwrap().mem_bytes = 1 << 30;
    cache.remove("h6");
    p.set_fact_cache(cache);
    let hosts: std::collections::BTreeSet<&str> =
        p.endpoints().unwrap()["node"].iter().map(|i| i.host.as_str()).collect();
    assert!(hosts.is_subset(&["h1", "h3", "h5"].into()), "{hosts:?}");
    // A pinned host that lacks it is refused, naming what it lacks.
    fs::write(t.path().join("services/node.toml"), format!("{svc}pinned = [\"h2\"]\n")).unwrap();
    let mut p2 = Project::load(t.path()).unwrap();
    let mut cache: HashMap<String, Facts> = p2.hosts.iter().map(|h| (h.name.clone(), facts(&h.name))).collect();
    cache.get_mut("h2").unwrap().cpus = 1;
    p2.set_fact_cache(cache);
    let e = p2.endpoints().unwrap_err();
    assert!(e.message.contains("pinned host h2 does not meet `requires`: its facts lack cpus >= 2"), "{}", e.message);
}

#[test]
fn a_syntax_error_in_a_command_template_is_refused_at_load() {
    let t = project(1, "command = \"/bin/node {{ instance.name \"\ninstances = 1\n");
    let e = error(t.path());
    assert!(e.starts_with("services/node.toml: command: syntax error"), "{e}");
}
