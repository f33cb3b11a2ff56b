//! `drover secret` and secrets in use, through the real binary: age files
//! one per secret, templates and encrypted layer files on simulated hosts,
//! modes, errors naming file and line or secret and recipients, and a grep
//! of every byte drover wrote for the clear-text value.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Run, DROVER};

/// An operator: a home of their own (the generated identity lands in its
/// config dir) and no DROVER_IDENTITY unless given.
struct Op {
    home: PathBuf,
    proj: PathBuf,
    identity: Option<PathBuf>,
}

impl Op {
    fn new(dir: &Path) -> Op {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let proj = dir.join("project");
        Op { home, proj, identity: None }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(&self.proj).args(args);
        c.env("HOME", &self.home).env("XDG_CONFIG_HOME", self.home.join(".config")).env_remove("DROVER_IDENTITY");
        c.env("TMPDIR", self.home.join("tmp"));
        std::fs::create_dir_all(self.home.join("tmp")).unwrap();
        if let Some(i) = &self.identity {
            c.env("DROVER_IDENTITY", i);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).stdin(Stdio::null()).output().unwrap())
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child =
            self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "drover {args:?}\n{}\n{}", r.stdout, r.stderr);
        r
    }
}

/// `needle` in `hay`, ignoring whitespace and miette's wrapping (`│`).
fn has(hay: &str, needle: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
    squash(hay).contains(&squash(needle))
}

fn init_project(op: &Op) {
    let r = Run::from(Command::new(DROVER).arg("init").arg(&op.proj).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// init generates an identity (0600) and lists its recipient; set takes
/// stdin and writes one armored file per secret; setting one secret leaves
/// the other's file byte-identical; list shows names only; edit runs
/// $EDITOR on a private temp file that is gone afterwards; add-file
/// encrypts a binary file into a layer; rekey after adding a recipient lets
/// the new operator decrypt.
#[test]
fn secret_verbs_init_set_list_edit_add_file_rekey() {
    let tmp = tempfile::tempdir().unwrap();
    let op = Op::new(tmp.path());
    init_project(&op);
    let r = op.ok(&["secret", "init"]);
    let id = op.home.join(".config/drover/identity.txt");
    assert!(r.stdout.contains(&id.display().to_string()), "{}", r.stdout);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&id).unwrap().permissions().mode() & 0o777, 0o600);
    let recipients = std::fs::read_to_string(op.proj.join("secrets/recipients.txt")).unwrap();
    assert!(recipients.lines().any(|l| l.starts_with("age1")), "{recipients}");
    assert_ne!(op.run(&["secret", "init"]).code, 0, "a second init refuses to overwrite");

    for (name, value) in [("db_password", "s3cr3t-db-value\n"), ("api_token", "tok-123")] {
        let r = op.run_stdin(&["secret", "set", name], value.as_bytes());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let db = op.proj.join("secrets/db_password.age");
    let text = std::fs::read_to_string(&db).unwrap();
    assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----") && !text.contains("s3cr3t"), "{text}");
    let api_before = std::fs::read(op.proj.join("secrets/api_token.age")).unwrap();
    op.run_stdin(&["secret", "set", "db_password"], b"second-value");
    assert_eq!(std::fs::read(op.proj.join("secrets/api_token.age")).unwrap(), api_before, "one secret, one file");
    assert_ne!(std::fs::read_to_string(&db).unwrap(), text);
    let bad = op.run_stdin(&["secret", "set", "no-dashes"], b"x");
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("letters, digits and _"), "{}", bad.stderr);

    let list = op.ok(&["secret", "list"]);
    assert!(list.stdout.contains("api_token") && list.stdout.contains("db_password"), "{}", list.stdout);
    assert!(!list.stdout.contains("second-value") && !list.stdout.contains("tok-123"));

    // The editor appends a line and records where the file was and its mode.
    let editor = tmp.path().join("editor.sh");
    let seen = tmp.path().join("seen");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\necho \"$1 $(stat -c %a \"$1\") $(cat \"$1\")\" > {}\nprintf '%s' '-edited' >> \"$1\"\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = op.cmd(&["secret", "edit", "db_password"]).env("EDITOR", &editor).env_remove("VISUAL").output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let seen = std::fs::read_to_string(&seen).unwrap();
    let (tmpfile, rest) = seen.split_once(' ').unwrap();
    assert!(rest.starts_with("600 second-value"), "the editor saw a 0600 file with the value: {seen}");
    assert!(!Path::new(tmpfile).exists(), "the temp file {tmpfile} is removed");

    let key = tmp.path().join("site.key");
    std::fs::write(&key, b"\x00\x01binary-key\xff").unwrap();
    op.ok(&["secret", "add-file", key.to_str().unwrap(), "layers/site/etc/ssl/site.key"]);
    assert!(op.proj.join("layers/site/etc/ssl/site.key.age").is_file());

    // A second operator: not a recipient yet, then added and rekeyed.
    let other = Op { home: tmp.path().join("home2"), proj: op.proj.clone(), identity: None };
    std::fs::create_dir_all(&other.home).unwrap();
    let other_id = tmp.path().join("other-id.txt");
    let gen = other.run(&["secret", "init", "--identity", other_id.to_str().unwrap()]);
    assert_ne!(gen.code, 0, "recipients.txt exists: {}", gen.stdout);
    let (other_key, other_pub) = drover_secrets::generate_identity();
    std::fs::write(&other_id, other_key.as_bytes()).unwrap();
    let other = Op { identity: Some(other_id.clone()), ..other };
    let denied = other.run(&["secret", "rekey"]);
    assert_ne!(denied.code, 0);
    assert!(denied.stderr.contains("no identity can decrypt") && denied.stderr.contains("age1"), "{}", denied.stderr);
    let mut rec = std::fs::read_to_string(op.proj.join("secrets/recipients.txt")).unwrap();
    rec.push_str(&format!("{other_pub}\n"));
    std::fs::write(op.proj.join("secrets/recipients.txt"), rec).unwrap();
    let rk = op.ok(&["secret", "rekey"]);
    assert_eq!(rk.stdout.lines().count(), 3, "{}", rk.stdout);
    let ids = drover_secrets::Identities::from_paths(&[other_id], true).unwrap();
    let store = drover_secrets::Store::with_identities(&op.proj, ids);
    assert_eq!(store.get("db_password").unwrap().expose(), b"second-value-edited");
    assert_eq!(store.get("api_token").unwrap().expose(), b"tok-123");
    let layer = store.decrypt_file(&op.proj.join("layers/site/etc/ssl/site.key.age"), "k").unwrap();
    assert_eq!(layer.expose(), b"\x00\x01binary-key\xff");
}

const VALUE: &str = "Zq8-clear-SECRET-4711";

/// A quickstart project on two simulated hosts with one secret in a
/// template (`/etc/app.conf`, line 2) and one encrypted binary layer file.
fn secret_project(tmp: &Path) -> Op {
    let op = Op::new(tmp);
    init_project(&op);
    std::fs::write(
        op.proj.join("inventory.toml"),
        "[hosts.s1]\naddress = \"10.0.0.1\"\n[hosts.s2]\naddress = \"10.0.0.2\"\n",
    )
    .unwrap();
    op.ok(&["secret", "init"]);
    let r = op.run_stdin(&["secret", "set", "db_password"], format!("{VALUE}\n").as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::write(
        op.proj.join("layers/site/etc/app.conf.j2"),
        "# app\npassword={{ secrets.db_password }}\nhost={{ host.name }}\n",
    )
    .unwrap();
    let key = tmp.join("site.key");
    std::fs::write(&key, format!("\x00key-{VALUE}\x01")).unwrap();
    op.ok(&["secret", "add-file", key.to_str().unwrap(), "layers/site/etc/ssl/site.key"]);
    std::fs::remove_file(&key).unwrap();
    op
}

fn sim(op: &Op, verb: &str, hosts: &Path, extra: &[&str]) -> Run {
    let mut args = vec![verb, "--simulate", hosts.to_str().unwrap()];
    if verb == "apply" {
        args.extend(["--confirm-timeout", "0s"]);
    }
    args.extend(extra);
    op.run(&args)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

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

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle) {
                out.push(p);
            }
        }
    }
    out
}

/// Apply, change the secret, `plan --diff` (table and JSON), apply again,
/// all at -vv: the clear-text values appear nowhere drover wrote on the
/// controller (the project with .drover/state.db, its temp dir, stdout and
/// stderr of every run), and on a host only in the target files and the
/// agent's private blob store (0600 files in 0700 directories).
#[test]
fn secret_values_are_nowhere_but_their_targets() {
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

/// Every command line and environment of every process on this machine
/// (controller, sudo, agents on lab hosts) holding any of `needles`.
fn processes_showing(needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for what in ["cmdline", "environ"] {
            let bytes = std::fs::read(e.path().join(what)).unwrap_or_default();
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    out.push(format!("{}/{what}: {}", e.path().display(), String::from_utf8_lossy(&bytes)));
                }
            }
        }
    }
    out
}

/// Real lab hosts: one logged into from `inventory.csv.age`, one with
/// `password = { secret = … }` (both non-root, so the password also feeds
/// `sudo`). The secret reaches its target 0600 root; neither it nor the
/// login password is in any process's arguments or environment while the
/// apply runs, nor in its output (`-vv`, `RUST_LOG=trace`, `--json`), nor
/// in anything drover wrote on the controller, nor
/// anywhere a host wrote (its overlay upper directory) outside the target
/// and the private blob store.
#[test]
fn on_lab_hosts_secrets_and_passwords_stay_out_of_args_env_and_files() {
    let f = support::Fleet::new("sec-secrets", 2);
    let keys = tempfile::tempdir().unwrap();
    let id = keys.path().join("identity.txt");
    let op = Op { home: keys.path().join("home"), proj: f.project(), identity: Some(id.clone()) };
    std::fs::create_dir_all(&op.home).unwrap();
    op.ok(&["secret", "init", "--identity", id.to_str().unwrap()]);
    let lab = drover_lab::Lab::open("sec-secrets").unwrap();
    let password = lab.password().to_string();
    let csv = lab.inventory_csv();
    let mut lines = csv.lines();
    let (first, second) = (lines.next().unwrap(), lines.next().unwrap());
    let plain = keys.path().join("inv.csv");
    std::fs::write(&plain, format!("{first}\n")).unwrap();
    op.ok(&["secret", "add-file", plain.to_str().unwrap(), "inventory.csv"]);
    std::fs::remove_file(&plain).unwrap();
    let cols: Vec<&str> = second.split(',').collect();
    assert_eq!(op.run_stdin(&["secret", "set", "h2_password"], cols[2].as_bytes()).code, 0);
    std::fs::write(
        op.proj.join("inventory.toml"),
        format!(
            "[hosts.h2]\naddress = \"{}\"\nuser = \"{}\"\npassword = {{ secret = \"h2_password\" }}\n",
            cols[0], cols[1]
        ),
    )
    .unwrap();
    assert_eq!(op.run_stdin(&["secret", "set", "db_password"], VALUE.as_bytes()).code, 0);
    std::fs::write(op.proj.join("layers/site/etc/app.conf.j2"), "password={{ secrets.db_password }}\n").unwrap();
    let t = op.run(&["trust"]);
    assert_eq!(t.code, 0, "{}\n{}", t.stdout, t.stderr);

    let needles = [VALUE, password.as_str()];
    // Output to files (not pipes, which would fill while the loop samples).
    let (out_path, err_path) = (keys.path().join("apply.out"), keys.path().join("apply.err"));
    let mut child = op
        .cmd(&["apply", "--json", "-vv"])
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut samples = 0;
    while child.try_wait().unwrap().is_none() {
        seen.extend(processes_showing(&needles));
        samples += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    };
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(samples > 5, "the apply was sampled while it ran ({samples})");
    assert!(r.stderr.lines().count() > 100, "trace logs were written and searched:\n{}", r.stderr);
    assert!(seen.is_empty(), "in a process's args or environment: {seen:?}");
    for h in r.hosts() {
        assert_eq!(h["outcome"], "changed", "{h}");
    }
    for v in needles {
        assert!(!r.stdout.contains(v) && !r.stderr.contains(v), "printed:\n{}\n{}", r.stdout, r.stderr);
        let found = files_containing(&op.proj, v.as_bytes());
        assert!(found.is_empty(), "in clear in the project: {found:?}");
        let found = files_containing(&op.home, v.as_bytes());
        assert!(found.is_empty(), "in clear in the controller's temp dir: {found:?}");
    }
    use std::os::unix::fs::MetadataExt;
    for (i, host) in f.lab_hosts().iter().enumerate() {
        let conf = f.host_file(i, "/etc/app.conf");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), format!("password={VALUE}\n"));
        let md = std::fs::metadata(&conf).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o600, 0, 0), "{}", host.name);
        for v in needles {
            for p in files_containing(&host.upper, v.as_bytes()) {
                let rel = p.strip_prefix(&host.upper).unwrap();
                if v == VALUE && rel == Path::new("etc/app.conf") {
                    continue;
                }
                assert!(
                    v == VALUE && rel.starts_with("var/lib/drover/blobs") && mode(&p) == 0o600,
                    "{} wrote a secret in clear to /{}",
                    host.name,
                    rel.display()
                );
            }
        }
    }
}

/// An operator's existing SSH ed25519 key works as recipient and identity;
/// a passphrase-protected one is refused with what to do instead.
#[test]
fn an_ssh_ed25519_key_is_a_recipient_and_an_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let mut op = Op::new(tmp.path());
    init_project(&op);
    std::fs::write(op.proj.join("inventory.toml"), "[hosts.s1]\naddress = \"10.0.0.1\"\n").unwrap();
    let key = tmp.path().join("id_ed25519");
    let gen = |path: &Path, pass: &str| {
        let s = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-C", "ops@example", "-N", pass, "-f"])
            .arg(path)
            .status()
            .unwrap();
        assert!(s.success());
    };
    gen(&key, "");
    let pubkey = tmp.path().join("id_ed25519.pub");
    op.ok(&["secret", "init", "--ssh-key", pubkey.to_str().unwrap()]);
    let rec = std::fs::read_to_string(op.proj.join("secrets/recipients.txt")).unwrap();
    assert!(rec.lines().any(|l| l.starts_with("ssh-ed25519 ") && l.ends_with("ops@example")), "{rec}");
    assert!(!op.home.join(".config/drover/identity.txt").exists(), "no age key generated");
    assert_eq!(op.run_stdin(&["secret", "set", "token"], VALUE.as_bytes()).code, 0);
    std::fs::write(op.proj.join("layers/site/etc/token.j2"), "{{ secrets.token }}").unwrap();
    op.identity = Some(key);
    let hosts = tmp.path().join("hosts");
    let r = sim(&op, "apply", &hosts, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(hosts.join("s1/etc/token")).unwrap(), VALUE);

    let locked = tmp.path().join("locked");
    gen(&locked, "a passphrase");
    op.identity = Some(locked);
    let r = sim(&op, "plan", &hosts, &[]);
    assert_eq!(r.code, 1);
    assert!(has(&r.stderr, "passphrase-protected"), "{}", r.stderr);
}

/// Bundles seal each host's secrets to its pinned SSH ed25519 host key
/// (`tests/bundle_secrets.rs`); a host with secrets and no such key pinned
/// is refused at build time, naming the host, the paths and the fix, and
/// nothing is written (no bundle, no clear text).
#[test]
fn a_bundle_for_a_host_without_a_pinned_ed25519_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let out = tmp.path().join("b.drover");
    let r = op.run(&["bundle", "build", "-o", out.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for want in ["host s1", "/etc/app.conf", "no ssh-ed25519 key", "drover trust --hosts s1"] {
        assert!(has(&r.stderr, want), "{want}: {}", r.stderr);
    }
    assert!(!r.stderr.contains(VALUE));
    assert!(!out.exists() && !tmp.path().join("b.drover.partial").exists(), "a bundle was left behind");
    assert!(files_containing(tmp.path(), VALUE.as_bytes()).is_empty(), "nothing written in clear");
}

/// The failure paths drover handles: an editor that fails leaves the secret
/// as it was and no temp file; a binary secret in a template and a file
/// that is not age are errors naming the secret or file, before any host.
#[test]
fn failing_editor_binary_secret_in_template_and_corrupt_file_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let op = secret_project(tmp.path());
    let hosts = tmp.path().join("hosts");
    let before = std::fs::read(op.proj.join("secrets/db_password.age")).unwrap();
    let seen = tmp.path().join("seen");
    let script = format!("echo \"$1\" > {}; echo garbage > \"$1\"; exit 3", seen.display());
    let editor = tmp.path().join("bad-editor.sh");
    std::fs::write(&editor, format!("#!/bin/sh\n{script}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = Run::from(op.cmd(&["secret", "edit", "db_password"]).env("VISUAL", &editor).output().unwrap());
    assert_ne!(r.code, 0);
    assert!(has(&r.stderr, "exited with") && has(&r.stderr, "nothing changed"), "{}", r.stderr);
    assert_eq!(std::fs::read(op.proj.join("secrets/db_password.age")).unwrap(), before);
    let tmpfile = std::fs::read_to_string(&seen).unwrap();
    assert!(!Path::new(tmpfile.trim()).exists(), "temp file removed: {tmpfile}");

    assert_eq!(op.run_stdin(&["secret", "set", "blob"], b"\xff\xfe\x00").code, 0);
    std::fs::write(op.proj.join("layers/site/etc/blob.j2"), "{{ secrets.blob }}").unwrap();
    let r = sim(&op, "plan", &hosts, &[]);
    assert_eq!(r.code, 1);
    assert!(has(&r.stderr, "secret blob is not UTF-8 text") && has(&r.stderr, "add-file"), "{}", r.stderr);
    std::fs::remove_file(op.proj.join("layers/site/etc/blob.j2")).unwrap();

    std::fs::write(op.proj.join("layers/site/etc/ssl/site.key.age"), "not age at all\n").unwrap();
    let r = sim(&op, "apply", &hosts, &[]);
    assert_eq!(r.code, 1);
    assert!(has(&r.stderr, "site.key.age: cannot decrypt") && has(&r.stderr, "is it an age file?"), "{}", r.stderr);
    assert!(!hosts.exists(), "no host touched");
}
