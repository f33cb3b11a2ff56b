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
