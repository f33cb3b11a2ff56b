//! `after` (start order): names must be services of the project, with no
//! cycle; both are load errors pointing at the `after` entry.

use drover_spec::Project;

use crate::support::{facts, render_error, write};

/// Role `app` with services a, b, c (native) whose files get `after`.
fn project(a: &str, b: &str, c: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write(p, "drover.toml", "[project]\nname = \"t\"\n");
    write(p, "inventory.toml", "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"app\"]\n");
    write(p, "roles/app.toml", "services = [\"a\", \"b\", \"c\"]\n");
    for (n, extra) in [("a", a), ("b", b), ("c", c)] {
        write(p, &format!("services/{n}.toml"), &format!("command = \"sleep 1000\"\n{extra}"));
    }
    d
}

#[test]
fn after_naming_services_of_the_project_loads() {
    let d = project("", "after = [\"a\"]\n", "after = [\"a\", \"b\"]\n");
    Project::load(d.path()).unwrap_or_else(|e| panic!("{}", render_error(e)));
}

#[test]
fn after_naming_an_unknown_service_is_an_error_at_its_line() {
    let d = project("", "\nafter = [\"db\"]\n", "");
    let e = err(&d);
    assert!(e.contains("service b starts after \"db\", which is not a service of the project"), "{e}");
    assert!(e.contains("services/b.toml:3"), "{e}");
    assert!(e.contains("a, b, c"), "{e}");
}

#[test]
fn a_cycle_in_after_is_an_error_naming_the_cycle() {
    let d = project("after = [\"c\"]\n", "after = [\"a\"]\n", "after = [\"b\"]\n");
    let e = err(&d);
    assert!(e.contains("start order has a cycle: a → c → b → a"), "{e}");
    let d = project("after = [\"a\"]\n", "", "");
    let e = err(&d);
    assert!(e.contains("start order has a cycle: a → a"), "{e}");
}

fn err(d: &tempfile::TempDir) -> String {
    match Project::load(d.path()) {
        Ok(_) => panic!("loaded"),
        Err(e) => render_error(e),
    }
}

/// The manifest tells the agent, per host, which supervisor names each
/// service starts after: an instanced service's instances by name.
#[test]
fn the_compiled_manifest_names_what_each_service_starts_after_instances_included() {
    let d = project("instances = 2\n", "after = [\"a\"]\n", "after = [\"b\", \"a\"]\n");
    let p = Project::load(d.path()).unwrap_or_else(|e| panic!("{}", render_error(e)));
    let c = p
        .compile(&p.hosts[0], &facts(drover_proto::Supervisor::Runit), 1)
        .unwrap_or_else(|e| panic!("{}", render_error(e)));
    let got: Vec<(&str, Vec<&str>)> =
        c.manifest.services.iter().map(|s| (s.name.as_str(), s.after.iter().map(String::as_str).collect())).collect();
    assert_eq!(got, [("a-0", vec![]), ("a-1", vec![]), ("b", vec!["a-0", "a-1"]), ("c", vec!["a-0", "a-1", "b"])]);
}

/// Under runit (which starts a new service directory by itself) a service
/// with `after` waits in its run script while the agent holds it; one
/// without `after` has the script it always had.
#[test]
fn a_runit_service_with_after_waits_while_the_agent_holds_it() {
    let d = project("", "after = [\"a\"]\n", "");
    let p = Project::load(d.path()).unwrap_or_else(|e| panic!("{}", render_error(e)));
    let c = p
        .compile(&p.hosts[0], &facts(drover_proto::Supervisor::Runit), 1)
        .unwrap_or_else(|e| panic!("{}", render_error(e)));
    let run = |n: &str| {
        let e = c.manifest.entry(&format!("/etc/sv/{n}/run")).unwrap();
        let drover_proto::EntryKind::File { hash, .. } = e.kind else { panic!() };
        match &c.blobs[&hash] {
            drover_spec::BlobSource::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
            drover_spec::BlobSource::File(f) => std::fs::read_to_string(f).unwrap(),
        }
    };
    let b = run("b");
    let lines: Vec<&str> = b.lines().collect();
    assert_eq!(lines[0], "#!/bin/sh");
    assert_eq!(lines[3], "while [ -e /run/drover/hold/b ]; do sleep 0.2; done", "{b}");
    assert!(b.ends_with("exec /bin/sh -c 'exec sleep 1000'\n"), "{b}");
    assert!(!run("a").contains("hold"), "{}", run("a"));
}
