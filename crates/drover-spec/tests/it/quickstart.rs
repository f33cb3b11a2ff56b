//! Loading and compiling real project directories (the quickstart scaffold,
//! plus broken variants of it).

use std::fs;
use std::path::{Path, PathBuf};

use drover_proto::{EntryKind, Facts, Supervisor};
use drover_spec::Project;

use crate::support::render_error;

fn scaffold() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../drover/scaffold/quickstart")
}

/// A copy of the quickstart with a two-host inventory.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&scaffold(), dir.path());
    fs::write(
        dir.path().join("inventory.toml"),
        "[defaults]\nuser = \"root\"\n\n[hosts.h1]\naddress = \"10.0.0.1\"\nhost-key = \"ssh-ed25519 AAAA\"\n\n[hosts.h2]\naddress = \"10.0.0.2\"\n[hosts.h2.vars]\nsite_title = \"Second\"\n",
    )
    .unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn facts(name: &str) -> Facts {
    Facts { hostname: name.into(), supervisor: Some(Supervisor::Runit), ..Default::default() }
}

#[test]
fn quickstart_compiles_to_files_units_and_a_service() {
    let dir = project();
    let p = Project::load(dir.path()).unwrap();
    assert_eq!(p.hosts.len(), 2);
    let h1 = &p.hosts[0];
    let c = p.compile(h1, &facts("h1"), 3).unwrap();
    let paths: Vec<&str> = c.manifest.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/etc/motd", "/etc/service/web", "/etc/sv/web/log/run", "/etc/sv/web/run", "/srv/site/index.html"]
    );
    let web = &c.manifest.services[0];
    assert_eq!(web.name, "web");
    assert!(web.triggers.contains(&"/srv/site/index.html".to_string()));
    assert!(!web.triggers.contains(&"/etc/motd".to_string()), "motd must not restart the web server");
    let index = c.manifest.entry("/srv/site/index.html").unwrap();
    let EntryKind::File { hash, .. } = index.kind else { panic!() };
    let drover_spec::BlobSource::Bytes(b) = &c.blobs[&hash] else { panic!() };
    let html = String::from_utf8_lossy(b);
    assert!(
        html.contains("host: h1 (h1)") && html.contains("generation: 3") && html.contains("Hello from drover"),
        "{html}"
    );
}

#[test]
fn compile_is_deterministic_and_host_vars_win() {
    let dir = project();
    let p = Project::load(dir.path()).unwrap();
    let a = p.compile(&p.hosts[0], &facts("h1"), 1).unwrap().manifest.hash();
    let b = p.compile(&p.hosts[0], &facts("h1"), 1).unwrap().manifest.hash();
    assert_eq!(a, b);
    let c = p.compile(&p.hosts[0], &facts("h1"), 2).unwrap().manifest.hash();
    assert_ne!(a, c, "the generation is part of the rendered page");
    let h2 = p.compile(&p.hosts[1], &facts("h2"), 1).unwrap();
    let idx = h2.manifest.entry("/srv/site/index.html").unwrap();
    let EntryKind::File { hash, .. } = idx.kind else { panic!() };
    let drover_spec::BlobSource::Bytes(b) = &h2.blobs[&hash] else { panic!() };
    assert!(String::from_utf8_lossy(b).contains("<h1>Second</h1>"));
}

#[test]
fn vars_precedence_project_group_role_host() {
    let dir = project();
    fs::write(
        dir.path().join("inventory.toml"),
        "[groups.g.vars]\na = \"group\"\nb = \"group\"\nc = \"group\"\n\n[hosts.h1]\naddress = \"10.0.0.1\"\ngroups = [\"g\"]\n[hosts.h1.vars]\nc = \"host\"\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("drover.toml"),
        "[defaults]\nroles = [\"site\"]\n[vars]\na = \"project\"\nz = \"project\"\n",
    )
    .unwrap();
    fs::write(dir.path().join("roles/site.toml"), "layers = [\"site\"]\n[vars]\nb = \"role\"\nc = \"role\"\n").unwrap();
    let p = Project::load(dir.path()).unwrap();
    let v = p.vars_for(&p.hosts[0]);
    let get = |k: &str| v[k].as_str().unwrap().to_string();
    assert_eq!(
        (get("z"), get("a"), get("b"), get("c")),
        ("project".into(), "group".into(), "role".into(), "host".into())
    );
}

#[test]
fn unknown_role_names_file_line_and_fix() {
    let dir = project();
    fs::write(dir.path().join("inventory.toml"), "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"sight\"]\n").unwrap();
    let e = render_error(Project::load(dir.path()).err().unwrap());
    assert!(e.contains("inventory.toml:3"), "{e}");
    assert!(e.contains("role \"sight\", which does not exist"), "{e}");
    assert!(e.contains("create roles/sight.toml, or use one of: site"), "{e}");
}

#[test]
fn misspelt_key_is_an_error_at_its_line() {
    let dir = project();
    fs::write(dir.path().join("services/web.toml"), "command = \"x\"\nrestart_on = [\"/srv/**\"]\n").unwrap();
    let e = render_error(Project::load(dir.path()).err().unwrap());
    assert!(e.contains("services/web.toml:2"), "{e}");
    assert!(e.contains("unknown field `restart_on`"), "{e}");
}

#[test]
fn template_error_names_template_line_and_host() {
    let dir = project();
    fs::write(dir.path().join("layers/site/srv/site/index.html.j2"), "line one\n{{ site_titel }}\n").unwrap();
    let p = Project::load(dir.path()).unwrap();
    let e = render_error(p.compile(&p.hosts[0], &facts("h1"), 1).err().unwrap());
    assert!(e.contains("layers/site/srv/site/index.html.j2:2"), "{e}");
    assert!(e.contains("undefined") && e.contains("host h1"), "{e}");
}

#[test]
fn csv_inventory_with_roles_and_bad_line() {
    let dir = project();
    fs::remove_file(dir.path().join("inventory.toml")).unwrap();
    fs::write(
        dir.path().join("inventory.csv"),
        "address,user,password\n10.0.0.5,op,secret\n10.0.0.6:2222,op,pw,site\n",
    )
    .unwrap();
    let p = Project::load(dir.path()).unwrap();
    assert_eq!(p.hosts.len(), 2);
    assert_eq!(p.hosts[1].port, 2222);
    assert_eq!(p.hosts[1].auth.password.as_deref(), Some("pw"));
    assert_eq!(p.hosts[0].roles, vec!["site"], "CSV hosts without roles get the project default");
    assert!(!format!("{:?}", p.hosts[0].auth).contains("secret"), "passwords are redacted in Debug");
    fs::write(dir.path().join("inventory.csv"), "10.0.0.5,op,secret\n10.0.0.6,op\n").unwrap();
    let e = render_error(Project::load(dir.path()).err().unwrap());
    assert!(e.contains("inventory.csv:2") && e.contains("address,user,password"), "{e}");
}

#[test]
fn known_hosts_file_pins_keys() {
    let dir = project();
    fs::write(dir.path().join("known_hosts"), "10.0.0.2 ssh-ed25519 BBBB\n").unwrap();
    let p = Project::load(dir.path()).unwrap();
    assert_eq!(p.hosts[1].host_keys, vec!["ssh-ed25519 BBBB"]);
}

#[test]
fn bad_duration_and_health_are_reported() {
    let dir = project();
    fs::write(
        dir.path().join("services/web.toml"),
        "command = \"x\"\n[health]\nhttp = \"http://127.0.0.1/\"\ntimeout = \"2 weeks\"\n",
    )
    .unwrap();
    let e = render_error(Project::load(dir.path()).err().unwrap());
    assert!(e.contains("services/web.toml:4") && e.contains("500ms"), "{e}");
}

#[test]
fn missing_project_says_how_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let e = render_error(Project::load(dir.path()).err().unwrap());
    assert!(e.contains("drover init"), "{e}");
}

/// `reboot = true` in a role's `[rollout]` marks that role for reboots
/// (`apply` reboots its hosts); the project default stays without; a
/// `reboot` that is not a boolean is an error at its line.
#[test]
fn reboot_in_a_role_rollout_policy() {
    let dir = project();
    let role = dir.path().join("roles/site.toml");
    let text = fs::read_to_string(&role).unwrap();
    fs::write(&role, format!("{text}\n[rollout]\nreboot = true\n")).unwrap();
    let p = Project::load(dir.path()).unwrap();
    assert!(p.rollout_policy(Some("site")).reboot);
    assert!(!p.rollout_policy(None).reboot);
    assert_eq!(p.reboot_roles(), ["site"]);

    fs::write(&role, format!("{text}\n[rollout]\nreboot = \"yes\"\n")).unwrap();
    let e = render_error(Project::load(dir.path()).err().expect("a string reboot is refused"));
    assert!(e.contains("site.toml") && e.contains("reboot"), "{e}");
}
