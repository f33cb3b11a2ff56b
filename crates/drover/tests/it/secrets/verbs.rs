//! The `secret` verbs themselves: init, set, list, edit, add-file, rekey;
//! an SSH key as recipient and identity; and their failures.

use std::path::Path;
use std::process::Command;

use super::{has, secret_project, sim, Op, VALUE};
use crate::support::{init_project, Run};

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
    init_project(&op.proj);
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

/// An operator's existing SSH ed25519 key works as recipient and identity;
/// a passphrase-protected one is refused with what to do instead.
#[test]
fn an_ssh_ed25519_key_is_a_recipient_and_an_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let mut op = Op::new(tmp.path());
    init_project(&op.proj);
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
