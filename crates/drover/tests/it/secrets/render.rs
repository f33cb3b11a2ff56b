//! `drover render` on a project with secrets: values shown as
//! `<secret NAME>` unless `--show-secrets`, and what it prints with them is
//! byte for byte what `apply` installs.

use super::{secret_project, sim, VALUE};

#[test]
fn render_redacts_secret_values_unless_asked_and_shows_what_apply_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());

    let r = op.ok(&["render", "s1", "/etc/app.conf"]);
    assert_eq!(r.stdout, "# app\npassword=<secret db_password>\nhost=s1\n");
    assert!(!r.stdout.contains(VALUE) && !r.stderr.contains(VALUE), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("db_password") && r.stderr.contains("--show-secrets"), "{}", r.stderr);
    // An encrypted layer file is a secret as a whole.
    let k = op.ok(&["render", "s1", "/etc/ssl/site.key"]);
    assert!(!k.stdout.contains(VALUE) && k.stdout.starts_with("<secret layers/"), "{}", k.stdout);

    let shown = op.ok(&["render", "s1", "/etc/app.conf", "--show-secrets"]);
    assert_eq!(shown.stdout, format!("# app\npassword={VALUE}\nhost=s1\n"));
    let hosts = tmp.path().join("hosts");
    let a = sim(&op, "apply", &hosts, &[]);
    assert_eq!(a.code, 0, "{}\n{}", a.stdout, a.stderr);
    assert_eq!(std::fs::read_to_string(hosts.join("s1/etc/app.conf")).unwrap(), shown.stdout);
}
