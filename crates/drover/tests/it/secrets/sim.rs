//! Secrets in use on simulated hosts: decrypted at their targets 0600,
//! errors before any host, nothing in clear anywhere else, and encrypted
//! inventories.

use std::collections::BTreeSet;
use std::path::Path;

use super::{has, mode, secret_project, sim, VALUE};
use crate::support::files_containing;

/// `secrets.NAME` in a template and a `*.age` layer file reach each host
/// decrypted, without the suffix, 0600 root; a world-readable mode from the
/// role is refused (naming the path) until the role allows it.
#[test]
fn secrets_install_decrypted_0600_and_world_readable_needs_allowing() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let hosts = tmp.path().join("hosts");
    let r = sim(&op, "apply", &hosts, &["--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for h in ["s1", "s2"] {
        let conf = hosts.join(h).join("etc/app.conf");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), format!("# app\npassword={VALUE}\nhost={h}\n"));
        assert_eq!(mode(&conf), 0o600);
        let key = hosts.join(h).join("etc/ssl/site.key");
        assert_eq!(std::fs::read(&key).unwrap(), format!("\x00key-{VALUE}\x01").into_bytes());
        assert_eq!(mode(&key), 0o600);
        assert!(!hosts.join(h).join("etc/ssl/site.key.age").exists());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&conf).unwrap().uid(), 0);
    }

    let role = op.proj.join("roles/site.toml");
    let base = std::fs::read_to_string(&role).unwrap();
    std::fs::write(&role, format!("{base}\n[files]\n\"/etc/app.conf\" = {{ mode = \"0644\" }}\n")).unwrap();
    let refused = sim(&op, "apply", &hosts, &[]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        has(&refused.stderr, "/etc/app.conf holds a secret but would be world-readable")
            && has(&refused.stderr, "allow-world-readable = true"),
        "{}",
        refused.stderr
    );
    assert_eq!(mode(&hosts.join("s1/etc/app.conf")), 0o600, "nothing was applied");

    std::fs::write(
        &role,
        format!("{base}\n[files]\n\"/etc/app.conf\" = {{ mode = \"0640\" }}\n\"/etc/ssl/*\" = {{ mode = \"0644\", allow-world-readable = true }}\n"),
    )
    .unwrap();
    let r = sim(&op, "apply", &hosts, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(mode(&hosts.join("s1/etc/app.conf")), 0o640, "the role's mode wins");
    assert_eq!(mode(&hosts.join("s1/etc/ssl/site.key")), 0o644, "explicitly allowed");
}

/// A template naming a secret that does not exist stops the run before any
/// host with the template's file and line; so does a missing or wrong
/// identity, naming the secret and the recipients it is encrypted to.
#[test]
fn undefined_secret_and_missing_key_stop_before_any_host() {
    let tmp = tempfile::tempdir().unwrap();
    let mut op = secret_project(tmp.path());
    let hosts = tmp.path().join("hosts");
    let tpl = op.proj.join("layers/site/etc/app.conf.j2");
    let good = std::fs::read_to_string(&tpl).unwrap();
    std::fs::write(&tpl, format!("{good}token={{{{ secrets.api_tokn }}}}\n")).unwrap();
    for verb in ["plan", "apply"] {
        let r = sim(&op, verb, &hosts, &[]);
        assert_eq!(r.code, 1, "{verb}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("layers/site/etc/app.conf.j2:4"), "{verb}: {}", r.stderr);
        assert!(has(&r.stderr, "secret \"api_tokn\" is not defined"), "{verb}: {}", r.stderr);
        assert!(!hosts.exists(), "{verb} touched no host");
    }
    std::fs::write(&tpl, good).unwrap();

    // Someone else's key, then no key at all.
    let (other, _) = drover_secrets::generate_identity();
    let other_id = tmp.path().join("other.txt");
    std::fs::write(&other_id, other.as_bytes()).unwrap();
    let recipient = std::fs::read_to_string(op.proj.join("secrets/recipients.txt")).unwrap();
    let recipient = recipient.lines().find(|l| l.starts_with("age1")).unwrap().to_string();
    op.identity = Some(other_id);
    let mut runs = vec![sim(&op, "plan", &hosts, &[]), sim(&op, "apply", &hosts, &[])];
    op.identity = None;
    std::fs::remove_file(op.home.join(".config/drover/identity.txt")).unwrap();
    runs.push(sim(&op, "apply", &hosts, &[]));
    for r in runs {
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        assert!(has(&r.stderr, "no identity can decrypt"), "{}", r.stderr);
        assert!(r.stderr.contains("db_password") || r.stderr.contains("site.key.age"), "{}", r.stderr);
        assert!(r.stderr.contains(&recipient[..12]), "names the recipient {recipient}: {}", r.stderr);
        assert!(!hosts.exists(), "no host touched");
    }
}

/// The secrets' targets (`/etc/app.conf`, `/etc/ssl/site.key`) in every
/// generation the agent under `root` keeps (the current one and those kept
/// for rollback): the hex hashes of the blobs they point to.
fn target_blobs(root: &Path) -> BTreeSet<String> {
    let layout = drover_agent::layout::Layout::new(root);
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(root.join("var/lib/drover/gens")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(generation) = name.strip_suffix(".manifest").and_then(|g| g.parse().ok()) else {
            continue;
        };
        let manifest = drover_agent::state::load_manifest(&layout, generation).unwrap();
        for entry in manifest.entries {
            if let drover_proto::EntryKind::File { hash, .. } = entry.kind {
                if entry.path == "/etc/app.conf" || entry.path == "/etc/ssl/site.key" {
                    out.insert(hash.to_hex());
                }
            }
        }
    }
    out
}

/// Apply, change the secret, `plan --diff` (table and JSON), apply again,
/// all at -vv: the clear-text values appear nowhere drover wrote on the
/// controller (the project with .drover/state.db, its temp dir, stdout and
/// stderr of every run), and on a host only in the target files and in the
/// blobs those targets point to: content-addressed (named by the hash of
/// what they hold), in a kept generation's manifest as a target's content,
/// and private (0600 files in 0700 directories).
#[test]
fn secret_values_are_nowhere_but_their_targets_and_the_blobs_they_point_to() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let hosts = tmp.path().join("hosts");
    let new_value = "Nw9-second-SECRET-0815";
    let mut outputs = Vec::new();
    let r = sim(&op, "apply", &hosts, &["-vv", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    outputs.push(r);
    let set = op.run_stdin(&["secret", "set", "db_password"], new_value.as_bytes());
    assert_eq!(set.code, 0, "{}", set.stderr);
    outputs.push(set);
    let key = tmp.path().join("site.key");
    std::fs::write(&key, format!("key-{new_value}")).unwrap();
    op.ok(&["secret", "add-file", key.to_str().unwrap(), "layers/site/etc/ssl/site.key"]);
    std::fs::remove_file(&key).unwrap();

    let table = sim(&op, "plan", &hosts, &["--diff", "-vv"]);
    assert_eq!(table.code, 0, "{}\n{}", table.stdout, table.stderr);
    assert!(table.stdout.contains("<secret db_password changed>"), "{}", table.stdout);
    assert!(table.stdout.contains("<secret layers/site/etc/ssl/site.key.age changed>"), "{}", table.stdout);
    let json = sim(&op, "plan", &hosts, &["--diff", "--json", "-vv"]);
    assert_eq!(json.code, 0, "{}\n{}", json.stdout, json.stderr);
    assert!(json.stdout.contains("<secret db_password changed>"), "{}", json.stdout);
    outputs.extend([table, json]);
    let r = sim(&op, "apply", &hosts, &["-vv", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    outputs.push(r);
    let conf = std::fs::read_to_string(hosts.join("s1/etc/app.conf")).unwrap();
    assert!(conf.contains(new_value), "the new value arrived: {conf}");
    assert!(op.proj.join(".drover/state.db").is_file(), "the runs were recorded");

    for v in [VALUE, new_value] {
        for r in &outputs {
            assert!(!r.stdout.contains(v) && !r.stderr.contains(v), "{v} printed:\n{}\n{}", r.stdout, r.stderr);
        }
        for dir in [&op.proj, &op.home] {
            let found = files_containing(dir, v.as_bytes());
            assert!(found.is_empty(), "{v} in clear on the controller: {found:?}");
        }
        for h in ["s1", "s2"] {
            let root = hosts.join(h);
            let pointed = target_blobs(&root);
            let found = files_containing(&root, v.as_bytes());
            if v == new_value {
                assert!(found.contains(&root.join("etc/app.conf")), "the grep finds the target: {found:?}");
            }
            for f in found {
                let rel = f.strip_prefix(&root).unwrap();
                if rel == Path::new("etc/app.conf") || rel == Path::new("etc/ssl/site.key") {
                    continue;
                }
                assert!(rel.starts_with("var/lib/drover/blobs"), "{v} in clear on {h} at {}", rel.display());
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                let content = blake3::hash(&std::fs::read(&f).unwrap()).to_hex();
                assert_eq!(content.as_str(), name, "{v} on {h} in a blob not named by its content");
                assert!(pointed.contains(&name), "{v} on {h} in a blob no target points to: {}", rel.display());
                assert_eq!(mode(&f), 0o600, "{}", rel.display());
                for d in f.ancestors().skip(1).take_while(|d| d.starts_with(root.join("var/lib/drover"))) {
                    assert_eq!(mode(d), 0o700, "{}", d.display());
                }
            }
        }
    }
}

/// `inventory.csv.age` is read like `inventory.csv` (hosts named by
/// address), its errors name the line without showing it, and an undefined
/// `password = { secret = … }` names the inventory line and the secret.
#[test]
fn encrypted_csv_inventory_and_password_secrets_load_without_showing_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let csv = tmp.path().join("inv.csv");
    std::fs::write(&csv, format!("10.9.0.1,ops,{VALUE}\n")).unwrap();
    op.ok(&["secret", "add-file", csv.to_str().unwrap(), "inventory.csv"]);
    std::fs::write(
        op.proj.join("inventory.toml"),
        "[hosts.t1]\naddress = \"10.9.0.2\"\nuser = \"ops\"\npassword = { secret = \"db_password\" }\n",
    )
    .unwrap();
    let hosts = tmp.path().join("hosts");
    let r = sim(&op, "apply", &hosts, &["--json", "-vv"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let names: Vec<String> = r.hosts().iter().map(|h| h["host"].as_str().unwrap_or_default().to_string()).collect();
    assert!(names.contains(&"10.9.0.1".to_string()) && names.contains(&"t1".to_string()), "{}", r.stdout);
    assert!(!r.stdout.contains(VALUE) && !r.stderr.contains(VALUE));

    std::fs::write(&csv, format!("10.9.0.1,ops,{VALUE}\n10.9.0.3,{VALUE}\n")).unwrap();
    op.ok(&["secret", "add-file", csv.to_str().unwrap(), "inventory.csv"]);
    let bad = sim(&op, "plan", &hosts, &[]);
    assert_eq!(bad.code, 1, "{}\n{}", bad.stdout, bad.stderr);
    assert!(has(&bad.stderr, "inventory.csv.age:2") && has(&bad.stderr, "found 2 column(s)"), "{}", bad.stderr);
    assert!(!bad.stderr.contains(VALUE), "{}", bad.stderr);
    std::fs::remove_file(op.proj.join("inventory.csv.age")).unwrap();

    std::fs::write(
        op.proj.join("inventory.toml"),
        "[hosts.t1]\naddress = \"10.9.0.2\"\n\n[hosts.t2]\naddress = \"10.9.0.3\"\npassword = { secret = \"root_pw\" }\n",
    )
    .unwrap();
    let undefined = sim(&op, "plan", &hosts, &[]);
    assert_eq!(undefined.code, 1);
    assert!(
        has(&undefined.stderr, "inventory.toml:4") && has(&undefined.stderr, "\"root_pw\" is not defined"),
        "{}",
        undefined.stderr
    );
}

/// A failed health gate shows what the service logged and what its health
/// command printed, with every secret value replaced by `<secret NAME>`:
/// in the table, `--json` and the stored run, the clear value nowhere.
#[test]
fn a_failed_gates_log_lines_and_command_output_show_no_secret_value() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let hosts = tmp.path().join("hosts");
    assert_eq!(sim(&op, "apply", &hosts, &[]).code, 0);
    // web logged the password (the fake's log is the svlogd file); its new
    // health command prints the file holding it and fails.
    let log = hosts.join("s1/var/log/drover/web");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("current"), format!("2026-12-05_01:00:00.00001 connecting with {VALUE}\n")).unwrap();
    let svc = op.proj.join("services/web.toml");
    let text = std::fs::read_to_string(&svc).unwrap();
    let check = "[health]\ncommand = \"cat etc/app.conf; grep password etc/app.conf >&2; exit 1\"\nretries = 1\n";
    std::fs::write(&svc, format!("{}{check}", &text[..text.find("[health]").unwrap()])).unwrap();

    let r = sim(&op, "apply", &hosts, &["--json", "--hosts", "s1"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "rolled-back", "{h:#}");
    let f = &h["failure"];
    assert_eq!(f["log"][0], "connecting with <secret db_password>", "{h:#}");
    assert_eq!(f["cause"]["probe"]["output"]["stderr"], "password=<secret db_password>", "{h:#}");
    assert!(f["cause"]["probe"]["output"]["stdout"].as_str().unwrap().contains("<secret db_password>"), "{h:#}");
    let table = sim(&op, "apply", &hosts, &["--hosts", "s1"]);
    assert!(table.stdout.contains("connecting with <secret db_password>"), "{}", table.stdout);
    let history = op.ok(&["history", "--json"]);
    for out in [&r.stdout, &r.stderr, &table.stdout, &table.stderr, &history.stdout] {
        assert!(!out.contains(VALUE), "the clear value was shown:\n{out}");
    }
}

/// A plain change in a file that also reads a secret is shown as that
/// change, the secret's value replaced by `<secret NAME>` (issue 24, item
/// 8); when the secret changed too, plan says so and shows neither value.
#[test]
fn plan_diff_shows_a_plain_change_beside_a_secret_with_the_value_redacted_and_says_when_the_secret_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let hosts = tmp.path().join("hosts");
    let r = sim(&op, "apply", &hosts, &["--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let tpl = op.proj.join("layers/site/etc/app.conf.j2");
    let edit = |from: &str, to: &str| {
        std::fs::write(&tpl, std::fs::read_to_string(&tpl).unwrap().replace(from, to)).unwrap();
    };
    edit("# app\n", "# app, v2\n");
    let table = sim(&op, "plan", &hosts, &["--diff"]);
    assert_eq!(table.code, 0, "{}\n{}", table.stdout, table.stderr);
    for want in ["-# app\n", "+# app, v2\n", " password=<secret db_password>\n"] {
        assert!(table.stdout.contains(want), "{want:?} missing:\n{}", table.stdout);
    }
    assert!(!table.stdout.contains("changed>"), "the secret did not change:\n{}", table.stdout);
    let json = sim(&op, "plan", &hosts, &["--diff", "--json"]);
    let conf = json.hosts()[0]["diffs"].as_array().unwrap().iter().find(|d| d["path"] == "/etc/app.conf").cloned();
    let conf = conf.unwrap_or_else(|| panic!("{}", json.stdout));
    assert!(conf["unified"].as_str().unwrap().contains("+# app, v2\n"), "{conf}");
    assert!(conf["content_note"].is_null(), "{conf}");

    // The secret changes as well: said, and neither the old nor the new value shown.
    let new_value = "Nw9-second-SECRET-0815";
    let set = op.run_stdin(&["secret", "set", "db_password"], new_value.as_bytes());
    assert_eq!(set.code, 0, "{}", set.stderr);
    edit("# app, v2\n", "# app, v3\n");
    let table = sim(&op, "plan", &hosts, &["--diff"]);
    assert_eq!(table.code, 0, "{}\n{}", table.stdout, table.stderr);
    for want in ["<secret db_password changed>", "+# app, v3\n", " password=<secret db_password>\n", " host=s1\n"] {
        assert!(table.stdout.contains(want), "{want:?} missing:\n{}", table.stdout);
    }
    for (r, v) in [(&table, VALUE), (&table, new_value), (&json, VALUE)] {
        assert!(!r.stdout.contains(v) && !r.stderr.contains(v), "{v} shown:\n{}", r.stdout);
    }
}
