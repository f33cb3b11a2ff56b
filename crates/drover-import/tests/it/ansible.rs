//! Importing realistic Ansible inventories (INI and YAML): the whole
//! generated inventory, the report of what was not imported, the round trip
//! through drover's own loader, and malformed input.

use std::fs;
use std::path::Path;

use drover_import::ansible::{import_str, Finding, Scope};
use drover_spec::Project;

use crate::support::{INI, INI_TOML, YAML, YAML_TOML};

fn finding(at: &str, scope: Scope, key: &str, why: &str, kept: bool) -> Finding {
    Finding { at: at.into(), scope, key: key.into(), why: why.into(), kept }
}

const BECOME: &str = "drover always runs its agent as root: directly when the user is root, otherwise through sudo (answered with the host's password, if any)";
const LOCAL: &str = "drover reaches every host over SSH; to manage this machine, give it an SSH address (127.0.0.1)";

#[test]
fn ini_three_tier_inventory_becomes_the_whole_expected_inventory_and_report() {
    let imp = import_str("hosts.ini", INI).unwrap();
    assert_eq!(imp.to_toml(), INI_TOML);
    let host = |n: &str| Scope::Host(n.into());
    let group = |n: &str| Scope::Group(n.into());
    assert_eq!(
        imp.findings,
        vec![
            finding(
                "hosts.ini:28",
                group("prod"),
                "ansible_ssh_private_key_file",
                "a relative path: drover reads it from the project directory, Ansible from where it runs; check it",
                true
            ),
            finding(
                "hosts.ini:32",
                group("prod"),
                "motd",
                "a Jinja expression Ansible would evaluate; drover keeps the text as is",
                true
            ),
            finding("hosts.ini:2", host("bastion"), "ansible_connection", LOCAL, false),
            finding("hosts.ini:12", host("db1"), "ansible_become", BECOME, false),
            finding(
                "hosts.ini:13",
                host("db2"),
                "ansible_python_interpreter",
                "drover runs no Python on hosts (its agent is a static binary)",
                false
            ),
        ]
    );
    assert_eq!(imp.unmapped().count(), 3);
    assert_eq!(imp.hosts.len(), 9);
    let groups: Vec<&str> = imp.groups.iter().map(String::as_str).collect();
    assert_eq!(groups, ["all", "app", "backend", "db", "frontend", "prod", "web"]);
}

#[test]
fn yaml_three_tier_inventory_becomes_the_whole_expected_inventory_and_report() {
    let imp = import_str("hosts.yml", YAML).unwrap();
    assert_eq!(imp.to_toml(), YAML_TOML);
    assert_eq!(
        imp.findings,
        vec![
            finding(
                "hosts.yml:29",
                Scope::Group("db".into()),
                "db_password",
                "encrypted with Ansible Vault, which drover cannot decrypt; put the value in by hand",
                false
            ),
            finding(
                "hosts.yml:32",
                Scope::Group("db".into()),
                "replica_of",
                "null has no TOML equivalent; give it a value or leave it out",
                false
            ),
            finding("hosts.yml:7", Scope::Host("bastion".into()), "ansible_connection", LOCAL, false),
            finding("hosts.yml:26", Scope::Host("db1".into()), "ansible_become", BECOME, false),
        ]
    );
    let groups: Vec<&str> = imp.groups.iter().map(String::as_str).collect();
    assert_eq!(groups, ["all", "canary", "db", "prod", "web"]);
}

/// A copy of the quickstart project (whose `[defaults] roles` gives every
/// host a role) with `inventory` as its inventory.toml.
fn project_with(inventory: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scaffold = Path::new(env!("CARGO_MANIFEST_DIR")).join("../drover/scaffold/quickstart");
    copy_dir(&scaffold, dir.path());
    fs::remove_file(dir.path().join("inventory.example.toml")).ok();
    fs::write(dir.path().join("inventory.toml"), inventory).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// (name, address, port, user, groups) of every host drover loaded.
fn loaded(p: &Project) -> Vec<(String, String, u16, String, Vec<String>)> {
    p.hosts.iter().map(|h| (h.name.clone(), h.address.clone(), h.port, h.user.clone(), h.groups.clone())).collect()
}

fn row(n: &str, a: &str, port: u16, user: &str, groups: &[&str]) -> (String, String, u16, String, Vec<String>) {
    (n.into(), a.into(), port, user.into(), groups.iter().map(|g| g.to_string()).collect())
}

/// The vars a template on `host` sees (drover's precedence), minus the
/// quickstart's own project and role vars (a role's vars beat group vars).
fn vars_of(p: &Project, host: &str) -> toml::Table {
    let h = p.hosts.iter().find(|h| h.name == host).unwrap();
    let mut v = p.vars_for(h);
    v.remove("site_title");
    v.remove("greeting");
    v
}

#[test]
fn ini_import_loads_with_drovers_loader_and_gives_each_host_the_vars_ansible_would() {
    let dir = project_with(&import_str("hosts.ini", INI).unwrap().to_toml());
    let p = Project::load(dir.path()).unwrap();
    // Ansible's precedence order: all < prod < frontend/backend < the leaf group.
    let web = &["all", "prod", "frontend", "web"][..];
    let db = &["all", "prod", "backend", "db"][..];
    let app = &["all", "prod", "backend", "app"][..];
    assert_eq!(
        loaded(&p),
        vec![
            row("app1", "app1", 22, "deploy", app),
            row("app2", "app2", 22, "deploy", app),
            row("bastion", "203.0.113.5", 22, "root", &["all"]),
            row("db1", "10.0.3.1", 5022, "postgres", db),
            row("db2", "10.0.3.2", 5022, "deploy", db),
            row("web-canary.example.com", "10.0.1.99", 2222, "deploy", web),
            row("web01.example.com", "web01.example.com", 22, "deploy", web),
            row("web02.example.com", "web02.example.com", 22, "deploy", web),
            row("web03.example.com", "web03.example.com", 22, "deploy", web),
        ]
    );
    let key = p.hosts.iter().find(|h| h.name == "db1").unwrap().auth.key.clone();
    assert_eq!(key, Some(dir.path().join("keys/prod_ed25519")));
    assert_eq!(p.hosts.iter().find(|h| h.name == "bastion").unwrap().auth.key, None);
    // The host's own var beats its group's; the child group's beats the parent's.
    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
    let prod =
        "dns = \"10.0.0.53\"\nntp_server = \"ntp.example.com\"\numask = \"0027\"\nmotd = \"{{ env }} says hi\"\n";
    assert_eq!(
        vars_of(&p, "web01.example.com"),
        t(&format!("{prod}env = \"prod-web\"\nhttp_port = 8080\ntls = true\n"))
    );
    assert_eq!(
        vars_of(&p, "web-canary.example.com"),
        t(&format!("{prod}env = \"prod-web\"\nhttp_port = 80\ntls = true\ncanary = true\n"))
    );
    assert_eq!(
        vars_of(&p, "db2"),
        t(&format!("{prod}env = \"prod\"\nmax_connections = 200\nratio = 1.5\nbackup_window = \"02:00-04:00\"\n"))
    );
    assert_eq!(vars_of(&p, "app1"), t(&format!("{prod}env = \"prod\"\nworkers = 4\ntags = [\"blue\", \"green\"]\n")));
    assert_eq!(vars_of(&p, "bastion"), t("dns = \"10.0.0.53\"\n"));
}

#[test]
fn yaml_import_loads_with_drovers_loader_and_group_priority_orders_group_vars() {
    let dir = project_with(&import_str("hosts.yml", YAML).unwrap().to_toml());
    let p = Project::load(dir.path()).unwrap();
    let web = &["all", "prod", "web"][..];
    assert_eq!(
        loaded(&p),
        vec![
            row("bastion", "203.0.113.5", 22, "root", &["all"]),
            row("db1", "10.0.3.1", 5022, "postgres", &["all", "prod", "db"]),
            row("web-canary.example.com", "10.0.1.99", 2222, "deploy", &["all", "prod", "canary", "web"]),
            row("web01.example.com", "web01.example.com", 22, "deploy", web),
            row("web02.example.com", "web02.example.com", 22, "deploy", web),
            row("web03.example.com", "web03.example.com", 22, "deploy", web),
        ]
    );
    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
    let base = "dns = \"10.0.0.53\"\nlimits = { nofile = 65536, procs = 512 }\n";
    // canary and prod are both children of all; canary's priority 10 puts
    // it after prod (by name it would come first), so its env wins.
    assert_eq!(
        vars_of(&p, "web-canary.example.com"),
        t(&format!("{base}env = \"canary\"\nhttp_port = 80\nupstreams = [\"app1\", \"app2\"]\ncanary = true\n"))
    );
    assert_eq!(
        vars_of(&p, "web02.example.com"),
        t(&format!("{base}env = \"prod\"\nhttp_port = 80\nupstreams = [\"app1\", \"app2\"]\n"))
    );
    assert_eq!(vars_of(&p, "db1"), t(&format!("{base}env = \"prod\"\n")));
}

/// (file name, text, line the error must name, words its message must have)
const MALFORMED: &[(&str, &str, usize, &str)] = &[
    (
        "hosts.ini",
        "[web]\nw1\n[prod:children]\nweb\nbackend\n",
        5,
        "[prod:children] refers to group backend, which is never declared",
    ),
    ("hosts.ini", "[web]\nw1\n[db:vars]\nx=1\n", 3, "[db:vars] refers to group db, which is never declared"),
    ("hosts.ini", "[web]\nweb[01:100].example.com\n", 2, "same width"),
    ("hosts.ini", "[web]\nweb[3:1]\n", 2, "after its end"),
    (
        "hosts.ini",
        "[web]\n\nw1 ansible_host=10.0.0.1 oops\n",
        3,
        "expected key=value after the host name, found `oops`",
    ),
    ("hosts.ini", "[web]\nw1 motd=\"unclosed\n", 2, "double quote is not closed"),
    ("hosts.ini", "[web:hosts]\nw1\n[web:things]\n", 3, "unknown type `things`"),
    ("hosts.ini", "[web\n", 1, "not a section header"),
    ("hosts.ini", "[web:vars]\nport 80\n[web]\n", 2, "expected key=value in [web:vars]"),
    ("hosts.ini", "[web]\nw1 ansible_port=http\n", 2, "ansible_port must be a port number (1-65535), found \"http\""),
    ("hosts.ini", "[a:children]\nb\n[b:children]\na\n", 1, "groups contain each other: a → b → a"),
    (
        "hosts.yml",
        "all:\n  children:\n    web:\n      hosts:\n        - w1\n",
        4,
        "hosts of group web must be a mapping",
    ),
    ("hosts.yml", "all:\n  children:\n    web:\n      host:\n        w1:\n", 4, "group web has an unknown key `host`"),
    ("hosts.yml", "all:\n  hosts:\n    w1:\n      ansible_host: [1\n", 5, "not valid YAML"),
    ("hosts.yml", "all:\n  hosts:\n    w1: {ansible_port: 99999}\n", 3, "ansible_port must be a port number"),
    ("hosts.yml", "- web\n- db\n", 1, "must be a mapping of group names"),
    ("hosts.ini", "[web]\nw1\n[web:children]\nweb\n", 4, "group web lists itself as a child"),
    ("hosts.ini", "[web:children]\na b\n", 2, "`a b` is not a group name"),
    ("hosts.ini", "[web]\nw1 ansible_host=\"[1, 2]\"\n", 2, "ansible_host must be a host name or IP address"),
    ("hosts.yml", "all:\n  children:\n    web: 5\n", 3, "group web must be a mapping"),
    (
        "hosts.yml",
        "all:\n  children:\n    web:\n      children:\n        web:\n",
        5,
        "group web is nested inside itself (all → web → web)",
    ),
    ("hosts.yml", "all:\n  hosts:\n    ? [a, b]\n    : 1\n", 2, "a key must be text"),
    ("hosts.yml", "all:\n  hosts:\n    web[3:1]:\n", 3, "after its end"),
    ("hosts.yml", "all:\n  hosts:\n    w1:\n      ansible_user: {a: 1}\n", 4, "ansible_user must be a user name"),
];

#[test]
fn malformed_inventories_are_errors_naming_the_file_and_line() {
    for (name, text, line, words) in MALFORMED {
        let err = import_str(name, text).expect_err(text);
        let prefix = format!("{name}:{line}: ");
        assert!(err.message.starts_with(&prefix), "{text:?}: want {prefix}…, got {}", err.message);
        assert!(err.message.contains(words), "{text:?}: want {words:?} in {}", err.message);
        assert!(err.help.as_deref().is_some_and(|h| !h.is_empty()), "{text:?}: no help");
        // The underline is on that line.
        let span = err.span.expect("a span");
        let underlined_line = text[..span.offset().min(text.len())].matches('\n').count() + 1;
        assert_eq!(underlined_line.min(text.lines().count()), (*line).min(text.lines().count()), "{text:?}");
    }
}

#[test]
fn an_unreadable_or_hostless_inventory_is_an_error_naming_the_file() {
    let err = drover_import::ansible::import_file(Path::new("/nonexistent/hosts.ini")).unwrap_err();
    assert!(err.message.starts_with("/nonexistent/hosts.ini: cannot read"), "{}", err.message);
    for (name, text) in [("hosts.ini", "# only a comment\n[web]\n"), ("hosts.yml", "all:\n  children:\n    web:\n")] {
        let err = import_str(name, text).unwrap_err();
        assert_eq!(err.message, format!("{name}: no hosts in this inventory"));
        assert!(err.help.unwrap().contains("right file"));
    }
}

#[test]
fn writing_refuses_an_existing_file_without_force_and_replaces_it_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.toml");
    fs::write(&path, "mine").unwrap();
    let e = drover_import::write_inventory(&path, "new", false).unwrap_err();
    assert!(matches!(e, drover_import::WriteError::Exists(ref p) if p == &path), "{e}");
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "mine");
    drover_import::write_inventory(&path, "new", true).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    let fresh = dir.path().join("other.toml");
    drover_import::write_inventory(&fresh, "x", false).unwrap();
    assert_eq!(fs::read_to_string(&fresh).unwrap(), "x");
    // No temporary files are left behind.
    let mut names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["inventory.toml", "other.toml"]);
    let e = drover_import::write_inventory(&dir.path().join("missing/inv.toml"), "x", false).unwrap_err();
    assert!(matches!(e, drover_import::WriteError::Io { .. }), "{e}");
}
