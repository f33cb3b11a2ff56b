//! `fleet` in templates: the whole inventory, in a fixed order, the same for
//! every host; other hosts' facts from the fact cache; a missing fact named.

use std::collections::HashMap;
use std::fs;

use drover_proto::{EntryKind, Facts, Supervisor};
use drover_spec::Project;

use crate::support::{render_error, write};

/// Roles etcd and web (and `spare`, which no host has); hosts declared out
/// of order: h10, h2, h1 (etcd + web, in group rack-a), h3 (web, rack-b).
fn project(template: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "drover.toml", "[project]\nname = \"t\"\n\n[vars]\nclient_port = 2379\n");
    write(d, "roles/etcd.toml", "layers = [\"fleet\"]\n[vars]\nclient_port = 2380\n");
    write(d, "roles/web.toml", "layers = [\"fleet\"]\n");
    write(d, "roles/spare.toml", "layers = [\"fleet\"]\n");
    write(d, "layers/fleet/etc/fleet.conf.j2", template);
    write(
        d,
        "inventory.toml",
        "[groups.rack-a.vars]\nrack = \"a\"\n\n\
         [hosts.h10]\naddress = \"10.0.0.10\"\nroles = [\"etcd\", \"web\"]\ngroups = [\"rack-a\"]\n\n\
         [hosts.h2]\naddress = \"10.0.0.2\"\nport = 2222\nroles = [\"etcd\", \"web\"]\ngroups = [\"rack-a\"]\n\n\
         [hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"etcd\", \"web\"]\ngroups = [\"rack-a\"]\nvars = { weight = 5 }\n\n\
         [hosts.h3]\naddress = \"10.0.0.3\"\nroles = [\"web\"]\ngroups = [\"rack-b\"]\n",
    );
    dir
}

fn facts(name: &str, cpus: u32) -> Facts {
    Facts { hostname: name.into(), supervisor: Some(Supervisor::Runit), cpus, ..Default::default() }
}

fn cache(hosts: &[&str]) -> HashMap<String, Facts> {
    hosts.iter().enumerate().map(|(i, h)| (h.to_string(), facts(h, i as u32 + 2))).collect()
}

/// The rendered /etc/fleet.conf for every host, by host name.
fn rendered(p: &Project) -> Vec<(String, String)> {
    p.hosts
        .iter()
        .map(|h| {
            let c = p.compile(h, &facts(&h.name, 1), 1).unwrap();
            let e = c.manifest.entries.iter().find(|e| e.path == "/etc/fleet.conf").unwrap();
            let EntryKind::File { hash, .. } = e.kind else { panic!("a file") };
            let drover_spec::BlobSource::Bytes(b) = &c.blobs[&hash] else { panic!("rendered bytes") };
            (h.name.clone(), String::from_utf8(b.to_vec()).unwrap())
        })
        .collect()
}

#[test]
fn fleet_lists_every_host_in_natural_order_with_its_roles_groups_vars_and_facts_the_same_for_every_host() {
    let dir = project(
        "{% for h in fleet.hosts %}{{ h.name }} {{ h.address }}:{{ h.port }} roles={{ h.roles|join(',') }} \
         groups={{ h.groups|join(',') }} port={{ h.vars.client_port }} rack={{ h.vars.rack|default('-') }} \
         weight={{ h.vars.weight|default(0) }} cpus={{ h.facts.cpus }} os={{ h.facts.supervisor }}\n{% endfor %}\
         etcd:{% for h in fleet.roles.etcd %} {{ h.name }}{% endfor %}\n\
         web:{% for h in fleet.roles.web %} {{ h.name }}{% endfor %}\n\
         spare:{{ fleet.roles.spare|length }}\n\
         rack-a:{% for h in fleet.groups['rack-a'] %} {{ h.name }}{% endfor %}\n\
         rack-b:{% for h in fleet.groups['rack-b'] %} {{ h.name }}{% endfor %}\n",
    );
    let mut p = Project::load(dir.path()).unwrap();
    p.set_fact_cache(cache(&["h1", "h2", "h3", "h10"]));
    let want = "h1 10.0.0.1:22 roles=etcd,web groups=rack-a port=2380 rack=a weight=5 cpus=2 os=runit\n\
                h2 10.0.0.2:2222 roles=etcd,web groups=rack-a port=2380 rack=a weight=0 cpus=3 os=runit\n\
                h3 10.0.0.3:22 roles=web groups=rack-b port=2379 rack=- weight=0 cpus=4 os=runit\n\
                h10 10.0.0.10:22 roles=etcd,web groups=rack-a port=2380 rack=a weight=0 cpus=5 os=runit\n\
                etcd: h1 h2 h10\nweb: h1 h2 h3 h10\nspare:0\nrack-a: h1 h2 h10\nrack-b: h3\n";
    for (host, text) in rendered(&p) {
        assert_eq!(text, want, "host {host} sees the whole fleet, in natural order, cached facts included");
    }
}

#[test]
fn fleet_templates_that_read_the_host_render_per_host() {
    // "Every peer but me", and the host's own facts: hosts share a rendering
    // only when everything the template reads besides `fleet` agrees.
    let dir = project(
        "{% for h in fleet.roles.etcd if h.name != host.name %}{{ h.name }} {% endfor %}cpus={{ facts.cpus }} gen={{ generation }}\n",
    );
    let mut p = Project::load(dir.path()).unwrap();
    p.set_fact_cache(cache(&["h1", "h2", "h3", "h10"]));
    let got: Vec<(String, String)> = rendered(&p);
    let want = [
        ("h1", "h2 h10 cpus=1 gen=1\n"),
        ("h10", "h1 h2 cpus=1 gen=1\n"),
        ("h2", "h1 h10 cpus=1 gen=1\n"),
        ("h3", "h1 h2 h10 cpus=1 gen=1\n"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(h, t)| (h.to_string(), t.to_string())).collect();
    assert_eq!(got, want);
    // The generation-independent source hash is per rendering too.
    let h10 = p.hosts.iter().find(|h| h.name == "h10").unwrap();
    let c = p.compile(h10, &facts("h10", 7), 2).unwrap();
    let e = c.manifest.entries.iter().find(|e| e.path == "/etc/fleet.conf").unwrap();
    let EntryKind::File { hash, .. } = e.kind else { panic!("a file") };
    let drover_spec::BlobSource::Bytes(b) = &c.blobs[&hash] else { panic!("bytes") };
    assert_eq!(String::from_utf8_lossy(b), "h1 h2 cpus=7 gen=2\n");
    assert!(e.source.is_some() && e.source != Some(hash), "the source hash is the generation-0 rendering's");
}

#[test]
fn a_membership_change_changes_the_member_list_on_every_host() {
    let tpl = "{% for h in fleet.roles.etcd %}{{ h.name }}=http://{{ h.address }}:2380{% if not loop.last %},{% endif %}{% endfor %}\n";
    let dir = project(tpl);
    let before = rendered(&Project::load(dir.path()).unwrap());
    assert!(before
        .iter()
        .all(|(_, t)| t == "h1=http://10.0.0.1:2380,h2=http://10.0.0.2:2380,h10=http://10.0.0.10:2380\n"));
    // h3 gains the etcd role.
    let inv = fs::read_to_string(dir.path().join("inventory.toml")).unwrap();
    fs::write(dir.path().join("inventory.toml"), inv.replace("roles = [\"web\"]", "roles = [\"web\", \"etcd\"]"))
        .unwrap();
    let after = rendered(&Project::load(dir.path()).unwrap());
    assert!(
        after.iter().all(|(_, t)| t
            == "h1=http://10.0.0.1:2380,h2=http://10.0.0.2:2380,h3=http://10.0.0.3:2380,h10=http://10.0.0.10:2380\n"),
        "{after:?}"
    );
}

#[test]
fn a_missing_fact_names_the_host_template_and_line() {
    let dir = project("# etcd members\n{% for h in fleet.roles.etcd %}{{ h.name }} {{ h.facts.cpus }}\n{% endfor %}");
    let mut p = Project::load(dir.path()).unwrap();
    p.set_fact_cache(cache(&["h1", "h10"]));
    let e = render_error(p.compile(&p.hosts[0], &facts("h10", 1), 1).err().unwrap());
    assert!(e.contains("host h2 has no cached facts"), "{e}");
    assert!(e.contains("`cpus`") && e.contains("rendering for host h1)"), "{e}");
    assert!(e.contains("fleet/etc/fleet.conf.j2:2"), "names the template and line: {e}");
    assert!(e.contains("drover status --hosts h2") && e.contains("default"), "says how to fix it: {e}");

    // Without any cache (a project never applied), the same: every host is compiled
    // against the same snapshot, so the preflight sees exactly this error too.
    let p = Project::load(dir.path()).unwrap();
    let e = render_error(p.compile(&p.hosts[0], &facts("h10", 1), 1).err().unwrap());
    assert!(e.contains("host h1 has no cached facts"), "{e}");
}

#[test]
fn a_missing_fact_with_a_default_renders_the_default() {
    let dir = project(
        "{% for h in fleet.roles.etcd %}{{ h.name }} {{ h.facts.cpus | default(1) }} \
         {{ 'known' if h.facts else 'unknown' }}\n{% endfor %}",
    );
    let mut p = Project::load(dir.path()).unwrap();
    p.set_fact_cache(cache(&["h1"]));
    for (host, text) in rendered(&p) {
        assert_eq!(text, "h1 2 known\nh2 1 unknown\nh10 1 unknown\n", "on {host}");
    }
}

#[test]
fn an_undefined_variable_in_a_fleet_template_is_not_blamed_on_facts() {
    let dir =
        project("{% for h in fleet.roles.etcd %}{{ h.facts.cpus | default(1) }}{% endfor %}\n{{ no_such_var }}\n");
    let p = Project::load(dir.path()).unwrap();
    let e = render_error(p.compile(&p.hosts[0], &facts("h10", 1), 1).err().unwrap());
    assert!(e.contains("undefined") && e.contains("fleet.conf.j2:2"), "{e}");
    assert!(!e.contains("no cached facts"), "the defaulted fact is not the problem: {e}");
}
