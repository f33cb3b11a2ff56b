//! `drover inventory import ansible` through the real binary: into a fresh
//! `drover init` project, the refusal to overwrite, `--force`, `-o`,
//! `--stdout`, a malformed file, and `drover plan` on the result getting as
//! far as connecting.

use crate::support::drover_at as drover;

/// Hosts on 127.0.0.1 ports nothing listens on: `plan` fails fast at the
/// connection, after everything before it (loading, compiling) succeeded.
const HOSTS_INI: &str = "\
[web]
web[1:2] ansible_host=127.0.0.1

[web:vars]
ansible_port=1
ansible_become=true
http_port=80

[db]
db1 ansible_host=127.0.0.1 ansible_port=9 ansible_python_interpreter=/usr/bin/python3

[prod:children]
web
db
";

#[test]
fn import_ansible_writes_refuses_to_overwrite_forces_and_the_result_plans_up_to_connecting() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    assert_eq!(drover(t, &["init", "proj"]).code, 0);
    std::fs::write(t.join("hosts.ini"), HOSTS_INI).unwrap();
    let proj = t.join("proj");
    let inv = proj.join("inventory.toml");

    let r = drover(t, &["-C", "proj", "inventory", "import", "ansible", "hosts.ini"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let expected_findings = [
        "hosts.ini:6: group web: ansible_become not imported: drover always runs its agent as root",
        "hosts.ini:10: host db1: ansible_python_interpreter not imported: drover runs no Python on hosts",
    ];
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    for (line, want) in lines.iter().zip(expected_findings) {
        assert!(line.starts_with(want), "{line}");
    }
    assert!(
        r.stdout.starts_with(
            "imported 3 hosts, 3 groups into proj/inventory.toml; 2 not imported, 0 imported with a caveat\n"
        ),
        "{}",
        r.stdout
    );
    let written = std::fs::read_to_string(&inv).unwrap();
    let body: String = written.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body.trim(),
        "[hosts.db1]\naddress = \"127.0.0.1\"\nport = 9\ngroups = [\"prod\", \"db\"]\n\n\
         [hosts.web1]\naddress = \"127.0.0.1\"\nport = 1\ngroups = [\"prod\", \"web\"]\n\n\
         [hosts.web2]\naddress = \"127.0.0.1\"\nport = 1\ngroups = [\"prod\", \"web\"]\n\n\
         [groups.web.vars]\nhttp_port = 80"
    );

    // Again: refused, file untouched, exit 1.
    std::fs::write(&inv, "# mine\n").unwrap();
    let r = drover(t, &["-C", "proj", "inventory", "import", "ansible", "hosts.ini"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("inventory.toml already exists; pass --force"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&inv).unwrap(), "# mine\n");
    let r = drover(t, &["-C", "proj", "inventory", "import", "ansible", "hosts.ini", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&inv).unwrap(), written);

    // --stdout prints the same text (findings and summary on stderr); -o writes elsewhere.
    let r = drover(t, &["inventory", "import", "ansible", "hosts.ini", "--stdout"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, written.as_str()), "{}", r.stderr);
    assert!(r.stderr.contains("imported 3 hosts, 3 groups into stdout"), "{}", r.stderr);
    let r = drover(t, &["inventory", "import", "ansible", "hosts.ini", "-o", "other.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(t.join("other.toml")).unwrap(), written);

    // The generated inventory is a drover inventory: plan loads and compiles
    // it and fails only at connecting (exit 2: hosts unreachable).
    let r = drover(&proj, &["plan"]);
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for (host, port) in [("db1", 9), ("web1", 1), ("web2", 1)] {
        let line =
            r.stdout.lines().find(|l| l.starts_with(&format!("{host} "))).unwrap_or_else(|| panic!("{}", r.stdout));
        assert!(line.contains("unreachable") && line.contains(&format!("127.0.0.1:{port}")), "{line}");
    }
}

#[test]
fn import_ansible_of_a_malformed_file_exits_1_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("hosts.ini"), "[web]\nweb1\n[prod:children]\nweb\napp\n").unwrap();
    let r = drover(tmp.path(), &["inventory", "import", "ansible", "hosts.ini", "--stdout"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("hosts.ini:5: [prod:children] refers to group app, which is never declared"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("declare it with a [app] section"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(!tmp.path().join("inventory.toml").exists());
}
