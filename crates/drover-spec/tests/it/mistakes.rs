//! Project files an operator got wrong, each caught at load with the file,
//! the line and what to do (issue #24, item 9): a non-UTF-8 byte, a role
//! file full of garbage, a missing role used by many hosts, and patterns
//! that match nothing drover manages.

use std::fs;
use std::path::Path;

use drover_spec::Project;

use crate::support::{render_error, write};

/// The quickstart scaffold with three hosts using its `site` role.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scaffold = Path::new(env!("CARGO_MANIFEST_DIR")).join("../drover/scaffold/quickstart");
    for rel in [
        "drover.toml",
        "roles/site.toml",
        "services/web.toml",
        "layers/site/etc/motd",
        "layers/site/srv/site/index.html.j2",
    ] {
        write(dir.path(), rel, &fs::read_to_string(scaffold.join(rel)).unwrap());
    }
    let inv: String = (1..=3).map(|i| format!("[hosts.h{i}]\naddress = \"10.0.0.{i}\"\n")).collect();
    write(dir.path(), "inventory.toml", &inv);
    dir
}

fn load_error(dir: &Path) -> String {
    match Project::load(dir) {
        Ok(_) => panic!("loaded"),
        Err(e) => render_error(e),
    }
}

#[test]
fn a_non_utf8_byte_in_drover_toml_is_named_not_taken_for_a_missing_project() {
    let dir = project();
    let p = dir.path().join("drover.toml");
    let mut bytes = fs::read(&p).unwrap();
    bytes.extend(b"\n# caf\xe9\n");
    fs::write(&p, &bytes).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("drover.toml") && e.contains("not UTF-8 text (byte 0xe9"), "{e}");
    assert!(e.contains("save the file as UTF-8") && !e.contains("not a drover project"), "{e}");
    let lines = String::from_utf8_lossy(&bytes).lines().count();
    assert!(e.contains(&format!("line {lines}:")), "{e}");
}

#[test]
fn a_garbage_role_file_is_named_once_not_called_missing() {
    let dir = project();
    fs::write(dir.path().join("roles/site.toml"), b"\x00\xff\xfe garbage").unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("roles/site.toml") && e.contains("not UTF-8 text"), "{e}");
    assert!(!e.contains("does not exist"), "{e}");
}

#[test]
fn a_missing_role_named_once_in_defaults_is_one_error_for_every_host() {
    let dir = project();
    fs::remove_file(dir.path().join("roles/site.toml")).unwrap();
    let e = load_error(dir.path());
    assert_eq!(e.matches("which does not exist").count(), 1, "{e}");
}

#[test]
fn restart_on_and_files_patterns_that_match_nothing_are_refused_with_their_line() {
    let dir = project();
    let svc = dir.path().join("services/web.toml");
    let text = fs::read_to_string(&svc).unwrap();
    let with = |globs: &str| text.replace("restart-on = [\"/srv/site/**\"]", &format!("restart-on = [{globs}]"));
    fs::write(&svc, with("\"/srv/site/**\", \"/etc/sitee/*.conf\"")).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("restart-on \"/etc/sitee/*.conf\" matches no file of any layer"), "{e}");
    assert!(e.contains("services/web.toml:"), "{e}");
    assert!(!e.contains("\"/srv/site/**\" matches"), "{e}");

    fs::write(&svc, &text).unwrap();
    let role = dir.path().join("roles/site.toml");
    let r = fs::read_to_string(&role).unwrap();
    fs::write(&role, format!("{r}\n[files.\"/srv/sit/*\"]\nmode = \"0640\"\n")).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("[files] \"/srv/sit/*\" matches no file of any layer") && e.contains("roles/site.toml:"), "{e}");

    // A pattern aimed at the unit files drover writes is fine.
    fs::write(&role, &r).unwrap();
    fs::write(&svc, with("\"/etc/sv/web/run\"")).unwrap();
    Project::load(dir.path()).unwrap();
}

/// `[ssh] persist` (docs/ssh.md, "Persistent connections"): off unless set,
/// `"0"` off too, a duration on; a bad value is named with its line.
#[test]
fn ssh_persist_is_off_by_default_and_by_zero_and_a_bad_value_is_refused_with_its_line() {
    let dir = project();
    let base = fs::read_to_string(dir.path().join("drover.toml")).unwrap();
    assert_eq!(Project::load(dir.path()).unwrap().settings.persist, None);
    let with = |v: &str| write(dir.path(), "drover.toml", &format!("{base}\n[ssh]\npersist = \"{v}\"\n"));
    with("0");
    assert_eq!(Project::load(dir.path()).unwrap().settings.persist, None);
    with("10m");
    assert_eq!(Project::load(dir.path()).unwrap().settings.persist, Some(std::time::Duration::from_secs(600)));
    with("forever");
    let e = load_error(dir.path());
    assert!(e.contains("drover.toml") && e.contains("forever") && e.contains("write a duration"), "{e}");
}
