//! Bundles that carry secrets, on lab hosts: each host's secret files are
//! sealed to its pinned SSH ed25519 host key, the file (and everything the
//! build wrote) holds no clear text, `inspect` lists the secret entries
//! without decrypting, `apply --bundle` (from a controller with no project
//! and no age identity) and `drover-agent install` both install them 0600
//! root; a wrong or re-keyed host and a tampered ciphertext are refused with
//! nothing changed.
//!
//! Needs root (the lab does).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{files_containing, Fleet, Run, DROVER};
use drover_proto::Hash;

const VALUE: &str = "Bq7-bundled-SECRET-9021";
const KEY_VALUE: &str = "Kx3-tls-KEY-SECRET-5150";
const NEW_VALUE: &str = "Nw5-rotated-SECRET-7734";

/// An operator's environment: the age identity for the project's secrets,
/// a home and a temp dir of its own (grepped afterwards).
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Env { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    /// `drover -C dir args…`; with the identity when `identity`, else none
    /// at all (an air-gapped controller that cannot decrypt anything).
    fn run(&self, dir: &Path, args: &[&str], identity: bool, stdin: &[u8]) -> Run {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(dir).args(args);
        c.env("HOME", self.path("home")).env("XDG_CONFIG_HOME", self.path("home/.config"));
        c.env("TMPDIR", self.path("tmp")).env_remove("DROVER_IDENTITY");
        if identity {
            c.env("DROVER_IDENTITY", self.path("identity.txt"));
        }
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }
    fn ok(&self, dir: &Path, args: &[&str]) -> Run {
        let r = self.run(dir, args, true, b"");
        assert_eq!(r.code, 0, "drover {args:?}\n{}\n{}", r.stdout, r.stderr);
        r
    }
}

/// A lab of two, a quickstart project with one secret in a template, one
/// encrypted layer file (same content on both hosts) and one plain file,
/// and a minisign key pair.
fn setup(name: &str) -> (Fleet, Env) {
    let f = Fleet::new(name, 2);
    let env = Env::new();
    let p = f.project();
    let id = env.path("identity.txt");
    env.ok(&p, &["secret", "init", "--identity", id.to_str().unwrap()]);
    set_secret(&f, &env, VALUE);
    fs::write(p.join("layers/site/etc/app.conf.j2"), "password={{ secrets.db_password }}\nhost={{ host.name }}\n")
        .unwrap();
    let key = env.path("site.key");
    fs::write(&key, format!("-----KEY {KEY_VALUE}-----\n")).unwrap();
    env.ok(&p, &["secret", "add-file", key.to_str().unwrap(), "layers/site/etc/ssl/site.key"]);
    fs::remove_file(&key).unwrap();
    fs::write(p.join("layers/site/etc/shared.txt"), "plain and shared\n").unwrap();
    let (k, public) = (env.path("ops.key"), env.path("ops.pub"));
    env.ok(Path::new("/"), &["bundle", "keygen", "--key", k.to_str().unwrap(), "--pub", public.to_str().unwrap()]);
    (f, env)
}

fn set_secret(f: &Fleet, env: &Env, value: &str) {
    let r = env.run(&f.project(), &["secret", "set", "db_password"], true, value.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn build_and_sign(f: &Fleet, env: &Env, name: &str) -> PathBuf {
    let out = env.path(name);
    env.ok(&f.project(), &["bundle", "build", "-o", out.to_str().unwrap()]);
    let key = env.path("ops.key");
    env.ok(Path::new("/"), &["bundle", "sign", out.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    out
}

/// `apply --bundle` from an empty directory with no age identity.
fn apply_bundle(f: &Fleet, env: &Env, bundle: &Path, hosts: &str) -> Run {
    let pubkey = env.path("ops.pub");
    let args = ["apply", "--json", "--bundle", bundle.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()];
    let mut args = args.to_vec();
    args.extend(["--hosts", hosts, "--confirm-timeout", "0s"]);
    // Hosts come from the project's inventory (it may hold passwords).
    env.run(&f.project(), &args, false, b"")
}

/// Put the bundle, its signature, the public key and the agent on host
/// `i`'s "USB stick" and run `drover-agent install` there (chrooted, in the
/// host's network namespace).
fn usb_install(f: &Fleet, env: &Env, i: usize, bundle: &Path, extra: &[&str]) -> Run {
    let stick = f.host_file(i, "/media/usb");
    fs::create_dir_all(&stick).unwrap();
    fs::copy(bundle, stick.join("site.drv")).unwrap();
    fs::copy(drover_bundle::sig_path(bundle), stick.join("site.drv.minisig")).unwrap();
    fs::copy(env.path("ops.pub"), stick.join("ops.pub")).unwrap();
    let agent = stick.join("drover-agent");
    if !agent.exists() {
        let pubkey = env.path("ops.pub");
        let args = ["bundle", "agent", bundle.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap(), "-o"];
        let mut args = args.to_vec();
        args.push(agent.to_str().unwrap());
        env.ok(Path::new("/"), &args);
    }
    let install = ["/media/usb/drover-agent", "install", "/media/usb/site.drv", "--pubkey", "/media/usb/ops.pub"];
    f.in_host(i, &[&install[..], extra].concat())
}

/// Host `i` holds the secrets at their targets, 0600 root, and nowhere else
/// in clear but the agent's private blob store (0600 files).
fn assert_secrets_installed(f: &Fleet, i: usize, value: &str) {
    let name = format!("h{}", i + 1);
    let conf = f.host_file(i, "/etc/app.conf");
    assert_eq!(fs::read_to_string(&conf).unwrap(), format!("password={value}\nhost={name}\n"));
    let key = f.host_file(i, "/etc/ssl/site.key");
    assert_eq!(fs::read_to_string(&key).unwrap(), format!("-----KEY {KEY_VALUE}-----\n"));
    for p in [&conf, &key] {
        let md = fs::metadata(p).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o600, 0, 0), "{}", p.display());
    }
    assert_eq!(fs::read_to_string(f.host_file(i, "/etc/shared.txt")).unwrap(), "plain and shared\n");
    let upper = &f.lab_hosts()[i].upper;
    for v in [value, KEY_VALUE] {
        for p in files_containing(upper, v) {
            let rel = p.strip_prefix(upper).unwrap();
            let target = rel == Path::new("etc/app.conf") || rel == Path::new("etc/ssl/site.key");
            let store = rel.starts_with("var/lib/drover/blobs") && fs::metadata(&p).unwrap().mode() & 0o7777 == 0o600;
            assert!(target || store, "{name} holds a secret in clear at /{}", rel.display());
        }
    }
}

fn hash(b: &[u8]) -> String {
    Hash(*blake3::hash(b).as_bytes()).to_hex()
}

/// Item by item: sealed per host, no clear text anywhere the build wrote,
/// plain blobs still shared, `inspect` (text and JSON) lists the secret
/// entries; `apply --bundle` installs on h1 (again: unchanged), `drover-agent
/// install` on h2, each 0600 root with the right content.
#[test]
fn bundled_secrets_are_sealed_per_host_and_install_by_apply_and_usb() {
    let (f, env) = setup("bsec-e2e");
    let site = build_and_sign(&f, &env, "site.drv");

    // Nothing the build wrote holds a clear value: the bundle and its
    // signature, the controller's temp dir, home and the project.
    for v in [VALUE, KEY_VALUE] {
        for dir in [env.dir.path(), &f.project()] {
            assert!(files_containing(dir, v).is_empty(), "{v} in clear: {:?}", files_containing(dir, v));
        }
    }
    // Not even the clear contents' hashes (a short secret's could be
    // confirmed by guessing): raw or in hex.
    let bytes = fs::read(&site).unwrap();
    for h in ["h1", "h2"] {
        for content in [format!("password={VALUE}\nhost={h}\n"), format!("-----KEY {KEY_VALUE}-----\n")] {
            let raw = blake3::hash(content.as_bytes());
            let found = |n: &[u8]| bytes.windows(n.len()).any(|w| w == n);
            assert!(!found(raw.as_bytes()) && !found(raw.to_hex().as_bytes()), "{h}: a clear hash is in the bundle");
        }
    }
    let r = env.ok(
        Path::new("/"),
        &["bundle", "verify", site.to_str().unwrap(), "--pubkey", env.path("ops.pub").to_str().unwrap()],
    );
    assert!(r.stdout.contains("good signature"), "{}", r.stdout);

    let r = env.ok(Path::new("/"), &["bundle", "inspect", "--json", site.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut rows: Vec<(String, String, String)> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let names = s["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect::<Vec<_>>();
            (s["host"].as_str().unwrap().into(), s["path"].as_str().unwrap().into(), names.join(","))
        })
        .collect();
    rows.sort();
    let want: Vec<(String, String, String)> = ["h1", "h2"]
        .iter()
        .flat_map(|h| {
            [
                (h.to_string(), "/etc/app.conf".to_string(), "db_password".to_string()),
                (h.to_string(), "/etc/ssl/site.key".to_string(), "layers/site/etc/ssl/site.key.age".to_string()),
            ]
        })
        .collect();
    assert_eq!(rows, want, "{v}");
    for (i, h) in v["hosts"].as_array().unwrap().iter().enumerate() {
        let fp = h["sealed_to"].as_str().unwrap();
        assert!(fp.starts_with("SHA256:"), "{h}");
        let lab_fp = drover_bundle::seal::fingerprint(&f.lab_hosts()[i].host_key);
        assert_eq!(fp, lab_fp, "h{} sealed to its own pinned key", i + 1);
    }
    let blobs = v["blobs"].as_array().unwrap();
    let shared = hash(b"plain and shared\n");
    assert_eq!(blobs.iter().filter(|b| b["hash"] == shared.as_str()).count(), 1, "plain blob stored once");
    assert!(blobs.iter().any(|b| b["hash"] == shared.as_str() && b["sealed"] == false));
    // The key file is the same on both hosts, yet sealed once per host; its
    // clear content is not a blob of the bundle.
    assert_eq!(blobs.iter().filter(|b| b["sealed"] == true).count(), 4, "{v}");
    let key_clear = hash(format!("-----KEY {KEY_VALUE}-----\n").as_bytes());
    assert!(!blobs.iter().any(|b| b["hash"] == key_clear.as_str()), "clear secret content stored");
    let text = env.ok(Path::new("/"), &["bundle", "inspect", site.to_str().unwrap()]).stdout;
    assert!(text.contains("secret files") && text.contains("/etc/app.conf  (db_password)"), "{text}");
    assert!(!text.contains(VALUE) && !r.stdout.contains(VALUE));

    // `plan --diff` from the bundle names the secret, shows no content.
    let pubkey = env.path("ops.pub");
    let args = ["plan", "--diff", "--bundle", site.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()];
    let r = env.run(&f.project(), &[&args[..], &["--hosts", "h1"]].concat(), false, b"");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("<secret db_password added>"), "{}", r.stdout);
    assert!(!r.stdout.contains(VALUE) && !r.stdout.contains(KEY_VALUE), "{}", r.stdout);

    // A controller with the bundle and no way to decrypt anything.
    let r = apply_bundle(&f, &env, &site, "h1");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hosts()[0]["outcome"], "changed", "{}", r.stdout);
    assert!(!r.stdout.contains(VALUE) && !r.stderr.contains(VALUE));
    assert_secrets_installed(&f, 0, VALUE);
    let blobs_dir = f.host_file(0, "/var/lib/drover/blobs");
    let ciphers: Vec<String> =
        v["secrets"].as_array().unwrap().iter().map(|s| s["blob"].as_str().unwrap().to_string()).collect();
    for c in &ciphers {
        assert!(!blobs_dir.join(c).exists(), "ciphertext {c} left in the store after opening");
    }
    let r = apply_bundle(&f, &env, &site, "h1");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hosts()[0]["outcome"], "unchanged", "{}", r.stdout);

    // USB install on h2: the bundle on its stick holds no clear text either.
    let r = usb_install(&f, &env, 1, &site, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("host h2: generation"), "{}", r.stdout);
    assert_secrets_installed(&f, 1, VALUE);
    let r = usb_install(&f, &env, 1, &site, &[]);
    assert!(r.code == 0 && r.stdout.contains("unchanged"), "{}\n{}", r.stdout, r.stderr);
}

/// Files of a host that matter for "nothing changed": everything it wrote,
/// less the lock and the agent binary a session may install.
fn managed_snapshot(f: &Fleet, i: usize) -> BTreeMap<PathBuf, (u64, i128)> {
    let mut s = f.upper_snapshot(i);
    s.retain(|p, _| {
        let p = p.to_string_lossy();
        !p.ends_with("var/lib/drover/lock") && !p.contains("var/lib/drover/agent") && !p.contains("/media/usb")
    });
    s
}

/// Wrong host (h1's entry installed on h2), re-keyed host (h1's key file
/// replaced after the bundle was built: `apply --bundle` and `install`), and
/// a tampered ciphertext (`verify`, `apply --bundle`, `install`): each is
/// refused with a clear error, and the host is left exactly as it was.
#[test]
fn wrong_or_rekeyed_hosts_and_tampered_ciphertext_are_refused_with_nothing_changed() {
    let (f, env) = setup("bsec-fail");
    let site = build_and_sign(&f, &env, "site.drv");
    let r = apply_bundle(&f, &env, &site, "h1");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_secrets_installed(&f, 0, VALUE);

    // Wrong host: h1's entry on h2.
    usb_install(&f, &env, 1, &site, &["--host", "h2"]); // the stick is ready; h2 installed
    let before = managed_snapshot(&f, 1);
    let r = usb_install(&f, &env, 1, &site, &["--host", "h1"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let h1_fp = drover_bundle::seal::fingerprint(&f.lab_hosts()[0].host_key);
    let h2_fp = drover_bundle::seal::fingerprint(&f.lab_hosts()[1].host_key);
    for want in ["sealed to host key", h1_fp.as_str(), h2_fp.as_str(), "nothing was changed on this host"] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    assert_eq!(managed_snapshot(&f, 1), before, "the wrong host changed");

    // The secret changes; h1 is re-keyed after the bundle was built (its
    // key files replaced; the pin follows whatever sshd presents).
    set_secret(&f, &env, NEW_VALUE);
    let next = build_and_sign(&f, &env, "next.drv");
    let key = f.host_file(0, "/etc/ssh/ssh_host_ed25519_key");
    fs::remove_file(&key).unwrap();
    fs::remove_file(key.with_extension("pub")).unwrap();
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(st.success());
    let old_inventory = fs::read_to_string(f.project().join("inventory.toml")).unwrap();
    let r = env.ok(&f.project(), &["trust", "--replace", "--hosts", "h1"]);
    assert!(r.stdout.contains("host-key replaced in inventory.toml"), "{}", r.stdout);
    // Replaced where it was pinned: the old key is trusted nowhere.
    let new_pub = fs::read_to_string(key.with_extension("pub")).unwrap();
    let new_key: Vec<&str> = new_pub.split_whitespace().take(2).collect();
    let inventory = fs::read_to_string(f.project().join("inventory.toml")).unwrap();
    assert!(inventory.contains(&new_key.join(" ")), "{inventory}");
    let old_h1_key =
        old_inventory.split("[hosts.h1]").nth(1).and_then(|t| t.lines().find(|l| l.starts_with("host-key"))).unwrap();
    assert!(!inventory.contains(old_h1_key), "the old pin stayed:\n{inventory}");
    let known = fs::read_to_string(f.project().join("known_hosts")).unwrap_or_default();
    assert!(!known.lines().any(|l| l.split(',').next() == Some("h1")), "{known}");
    let before = managed_snapshot(&f, 0);
    let r = apply_bundle(&f, &env, &next, "h1");
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let h = &r.hosts()[0];
    assert_eq!(h["outcome"], "failed", "{h}");
    let err = h.to_string();
    assert!(err.contains("sealed to host key") && err.contains("re-keyed") && err.contains("drover trust"), "{err}");
    assert_eq!(managed_snapshot(&f, 0), before, "the re-keyed host changed");
    assert_secrets_installed(&f, 0, VALUE);
    assert!(files_containing(&f.lab_hosts()[0].upper, NEW_VALUE).is_empty());
    let r = usb_install(&f, &env, 0, &next, &[]);
    assert!(r.code != 0 && r.stderr.contains("sealed to host key"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert_eq!(managed_snapshot(&f, 0), before, "a refused install changed the host");

    // Tampered ciphertext: one byte of h2's sealed app.conf flipped.
    let b = drover_bundle::Bundle::open(&next).unwrap();
    let h2 = b.index.host("h2").unwrap();
    let sealed = h2.sealed.iter().find(|s| s.path == "/etc/app.conf").unwrap();
    let at = b.blob(&sealed.cipher).unwrap().offset + 20;
    drop(b);
    let mut bytes = fs::read(&next).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(&next, bytes).unwrap();
    let pubkey = env.path("ops.pub");
    let r = env.run(
        Path::new("/"),
        &["bundle", "verify", next.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()],
        false,
        b"",
    );
    assert!(r.code != 0 && r.stderr.contains("signature check FAILED"), "{}", r.stderr);
    let before = managed_snapshot(&f, 1);
    let r = apply_bundle(&f, &env, &next, "h2");
    assert!(r.code != 0 && r.stderr.contains("signature check FAILED"), "{}\n{}", r.stdout, r.stderr);
    let r = usb_install(&f, &env, 1, &next, &[]);
    assert!(r.code != 0 && r.stderr.contains("signature check FAILED"), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(managed_snapshot(&f, 1), before, "a tampered bundle changed the host");
    assert_secrets_installed(&f, 1, VALUE);
}
