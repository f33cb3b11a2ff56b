//! Air-gapped bundles end to end, on lab hosts (which have no route off the
//! machine): build → sign → apply from the bundle alone, with peer relay
//! checked byte for byte; an incremental bundle carries only new blobs; a
//! USB-style install on a host with no controller; and every kind of
//! tampering refused with nothing changed on the host.
//!
//! Needs root (the lab does) and Debian's `minisign` (`scripts/deps`
//! installs it), to prove the signatures are standard.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{curl, drover_in, noise, ok, usb_stick, Fleet, Run};
use drover_proto::Hash;

fn minisign() -> &'static str {
    let have = Command::new("sh").args(["-c", "command -v minisign"]).output().is_ok_and(|o| o.status.success());
    assert!(have, "minisign is not installed: run `bash scripts/deps` (it installs the Debian package)");
    "minisign"
}

pub(crate) fn inspect(bundle: &Path) -> serde_json::Value {
    let r = drover_in(Path::new("/"), &["bundle", "inspect", "--json", bundle.to_str().unwrap()]);
    ok(&r);
    serde_json::from_str(&r.stdout).unwrap()
}

/// Run the agent inside host `i` (its network namespace, chrooted into its
/// root): what an operator does with a USB stick and a shell on the host.
fn agent_on_host(f: &Fleet, i: usize, args: &[&str]) -> Run {
    f.in_host(i, &[&["/media/usb/drover-agent"], args].concat())
}

pub(crate) struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let (k, p) = (dir.path().join("ops.key"), dir.path().join("ops.pub"));
        ok(&drover_in(dir.path(), &["bundle", "keygen", "--key", k.to_str().unwrap(), "--pub", p.to_str().unwrap()]));
        Keys { dir }
    }
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.path().join("ops.key")
    }
    pub(crate) fn public(&self) -> PathBuf {
        self.dir.path().join("ops.pub")
    }
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub(crate) fn build_and_sign(f: &Fleet, keys: &Keys, out: &Path, extra: &[&str]) {
    let mut args = vec!["bundle", "build", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&f.drover(&args));
    ok(&drover_in(Path::new("/"), &["bundle", "sign", out.to_str().unwrap(), "--key", keys.key().to_str().unwrap()]));
}

#[test]
fn build_sign_apply_offline_with_relay_then_incremental_then_usb_install() {
    let f = Fleet::new("bundle-e2e", 3);
    let keys = Keys::new();
    for h in f.lab_hosts() {
        let routes = Command::new("ip").args(["netns", "exec", &h.netns, "ip", "route"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&routes.stdout).contains("default"), "lab host has a way out");
    }
    // A large artifact, incompressible: relayed host to host.
    let artifact = noise(20 << 20);
    fs::create_dir_all(f.project().join("layers/site/opt/app")).unwrap();
    fs::write(f.project().join("layers/site/opt/app/artifact.bin"), &artifact).unwrap();
    let site = keys.path("site.drv");
    build_and_sign(&f, &keys, &site, &[]);

    // Standard tools accept the signature.
    let st = Command::new(minisign()).arg("-Vm").arg(&site).arg("-p").arg(keys.public()).output().unwrap();
    assert!(st.status.success(), "minisign -Vm refused: {}", String::from_utf8_lossy(&st.stderr));

    // Apply from the bundle alone: the project is moved away, the controller
    // runs in an empty directory.
    let away = f.project().with_extension("away");
    fs::rename(f.project(), &away).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let r = drover_in(
        empty.path(),
        &[
            "apply",
            "--json",
            "--bundle",
            site.to_str().unwrap(),
            "--pubkey",
            keys.public().to_str().unwrap(),
            "--relay",
            "--relay-min-mib",
            "4",
        ],
    );
    fs::rename(&away, f.project()).unwrap();
    ok(&r);
    let mut uploaded = 0;
    for h in r.hosts() {
        assert_eq!(h["outcome"], "changed", "{h}");
        uploaded += h["bytes_sent"].as_u64().unwrap();
    }
    for (i, host) in f.lab_hosts().iter().enumerate() {
        assert!(curl(&format!("http://{}:8080/", host.address)).contains(&format!("host: h{}", i + 1)));
        let got = fs::read(f.host_file(i, "/opt/app/artifact.bin")).unwrap();
        assert!(got == artifact, "h{}: relayed artifact differs", i + 1);
    }
    assert!(
        uploaded < artifact.len() as u64 * 3 / 2,
        "controller uploaded {uploaded} bytes for a {} byte artifact on 3 hosts: no relay",
        artifact.len()
    );

    // Incremental: one changed file, one new blob; everything else is in the base.
    fs::write(f.project().join("layers/site/etc/motd"), "incremental\n").unwrap();
    let inc = keys.path("inc.drv");
    build_and_sign(&f, &keys, &inc, &["--base", site.to_str().unwrap()]);
    let v = inspect(&inc);
    let blobs: Vec<&str> = v["blobs"].as_array().unwrap().iter().map(|b| b["hash"].as_str().unwrap()).collect();
    assert_eq!(blobs, vec![Hash(*blake3::hash(b"incremental\n").as_bytes()).to_hex()], "{v}");
    assert!(v["external"].as_array().unwrap().len() >= 3, "{v}");
    assert!(fs::metadata(&inc).unwrap().len() < 64 << 10, "incremental bundle is large");
    let r =
        f.drover(&["apply", "--json", "--bundle", inc.to_str().unwrap(), "--pubkey", keys.public().to_str().unwrap()]);
    ok(&r);
    for h in r.hosts() {
        assert_eq!(h["changes"].as_array().unwrap().len(), 1, "{h}");
    }
    assert_eq!(fs::read_to_string(f.host_file(1, "/etc/motd")).unwrap(), "incremental\n");

    // USB-style: a bundle for h3 only, installed on h3 by its own agent.
    fs::write(f.project().join("layers/site/etc/motd"), "from a usb stick\n").unwrap();
    let usb = keys.path("usb.drv");
    build_and_sign(&f, &keys, &usb, &["--hosts", "h3"]);
    usb_stick(&f, 2, &usb, &keys.public(), "");
    let r = agent_on_host(&f, 2, &["install", "/media/usb/site.drv", "--pubkey", "/media/usb/ops.pub"]);
    ok(&r);
    assert!(r.stdout.contains("host h3: generation"), "{}", r.stdout);
    assert_eq!(fs::read_to_string(f.host_file(2, "/etc/motd")).unwrap(), "from a usb stick\n");
    assert_eq!(fs::read_to_string(f.host_file(1, "/etc/motd")).unwrap(), "incremental\n");
    // Installing it again changes nothing.
    let r = agent_on_host(&f, 2, &["install", "/media/usb/site.drv", "--pubkey", "/media/usb/ops.pub"]);
    ok(&r);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
}

/// A signed bundle whose manifest for `host` writes outside the root.
fn escaping_bundle(good: &Path, out: &Path, key: &Path, host: &str) {
    let b = drover_bundle::Bundle::open(good).unwrap();
    let mut index = b.index.clone();
    let e = index.hosts.iter_mut().find(|h| h.name == host).unwrap();
    let mut entry = e.manifest.entries.iter().find(|x| x.path == "/etc/motd").unwrap().clone();
    entry.path = "/srv/../../etc/escaped".into();
    e.manifest = drover_proto::Manifest { entries: vec![entry.clone()], ..Default::default() };
    let drover_proto::EntryKind::File { hash, .. } = entry.kind else { panic!() };
    let mut content = Vec::new();
    b.extract(b.blob(&hash).unwrap(), &mut content).unwrap();
    let mut w = drover_bundle::Writer::create(out).unwrap();
    w.add(hash, drover_bundle::BlobInput::Bytes(&content)).unwrap();
    w.finish(index).unwrap();
    // drover refuses to sign it; someone holding the key can still, with
    // the standard tool.
    assert!(drover_bundle::sign::sign(out, key).is_err(), "drover signed an escaping bundle");
    let st = Command::new(minisign()).arg("-S").arg("-s").arg(key).arg("-m").arg(out).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
}

#[test]
fn tampered_bundles_are_refused_and_nothing_changes() {
    let f = Fleet::new("bundle-tamper", 2);
    let keys = Keys::new();
    let other = Keys::new();
    let other_pub = other.public();
    let good = keys.path("good.drv");
    build_and_sign(&f, &keys, &good, &[]);

    // A key made by the minisign tool signs bundles drover accepts.
    let ms = keys.path("ms");
    let st = Command::new(minisign())
        .args(["-G", "-W", "-p"])
        .arg(ms.with_extension("pub"))
        .arg("-s")
        .arg(ms.with_extension("key"))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let ms_signed = keys.path("ms.drv");
    fs::copy(&good, &ms_signed).unwrap();
    let g = ms_signed.to_str().unwrap();
    ok(&drover_in(Path::new("/"), &["bundle", "sign", g, "--key", ms.with_extension("key").to_str().unwrap()]));
    ok(&drover_in(Path::new("/"), &["bundle", "verify", g, "--pubkey", ms.with_extension("pub").to_str().unwrap()]));

    // The tampered variants, each with the good bundle's signature.
    let bytes = fs::read(&good).unwrap();
    let sig = fs::read(drover_bundle::sig_path(&good)).unwrap();
    let variant = |name: &str, content: &[u8], signed: bool| {
        let p = keys.path(name);
        fs::write(&p, content).unwrap();
        if signed {
            fs::write(drover_bundle::sig_path(&p), &sig).unwrap();
        }
        p
    };
    let mut flipped = bytes.clone();
    flipped[4096] ^= 0x40;
    let altered = variant("altered.drv", &flipped, true);
    let truncated = variant("truncated.drv", &bytes[..bytes.len() - 1000], true);
    let unsigned = variant("unsigned.drv", &bytes, false);
    let escaping = keys.path("escape.drv");
    escaping_bundle(&good, &escaping, &keys.key(), "h1");

    let stick = f.host_file(0, "/media/usb");
    fs::create_dir_all(&stick).unwrap();
    fs::copy(keys.public(), stick.join("ops.pub")).unwrap();
    fs::copy(&other_pub, stick.join("other.pub")).unwrap();
    let agent = stick.join("drover-agent");
    let pk = keys.public();
    ok(&drover_in(
        Path::new("/"),
        &["bundle", "agent", good.to_str().unwrap(), "--pubkey", pk.to_str().unwrap(), "-o", agent.to_str().unwrap()],
    ));
    let cases: [(&Path, &str, &str); 5] = [
        (&altered, "ops.pub", "signature check FAILED"),
        (&truncated, "ops.pub", "signature check FAILED"),
        (&good, "other.pub", "signed by a different key"),
        (&unsigned, "ops.pub", "no signature"),
        (&escaping, "ops.pub", "path must be normalised"),
    ];
    for (bundle, key, why) in cases {
        let name = bundle.file_name().unwrap().to_str().unwrap();
        fs::copy(bundle, stick.join(name)).unwrap();
        if drover_bundle::sig_path(bundle).exists() {
            fs::copy(drover_bundle::sig_path(bundle), drover_bundle::sig_path(&stick.join(name))).unwrap();
        }
        let before = f.upper_snapshot(0);
        let r = agent_on_host(
            &f,
            0,
            &["install", &format!("/media/usb/{name}"), "--pubkey", &format!("/media/usb/{key}"), "--host", "h1"],
        );
        assert_ne!(r.code, 0, "{name} with {key} was installed:\n{}", r.stdout);
        assert!(r.stderr.contains(why) && r.stderr.contains("nothing was changed"), "{name}: {}", r.stderr);
        assert_eq!(before, f.upper_snapshot(0), "{name}: the host changed");

        // The controller refuses them too, before touching any host.
        let key_path = if key == "ops.pub" { keys.public() } else { other_pub.clone() };
        let r = f.drover(&["apply", "--bundle", bundle.to_str().unwrap(), "--pubkey", key_path.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: controller accepted it:\n{}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(why), "{name}: {}", r.stderr);
    }
    assert!(!f.host_file(0, "/srv/site/index.html").exists() && !f.host_file(0, "/etc/escaped").exists());

    // A host that has a bundle key checks the controller's bundle itself:
    // h1 trusts another key and refuses; h2 trusts ours and applies.
    fs::create_dir_all(f.host_file(0, "/etc/drover")).unwrap();
    fs::copy(&other_pub, f.host_file(0, "/etc/drover/bundle.pub")).unwrap();
    fs::create_dir_all(f.host_file(1, "/etc/drover")).unwrap();
    fs::copy(keys.public(), f.host_file(1, "/etc/drover/bundle.pub")).unwrap();
    let r = f.drover(&["apply", "--json", "--bundle", good.to_str().unwrap(), "--pubkey", pk.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let hosts = r.hosts();
    assert_eq!(hosts[0]["outcome"], "failed", "{}", hosts[0]);
    assert!(hosts[0]["error"].as_str().unwrap().contains("different key"), "{}", hosts[0]);
    assert_eq!(hosts[1]["outcome"], "changed", "{}", hosts[1]);
    assert!(!f.host_file(0, "/srv/site/index.html").exists());
    assert!(f.host_file(1, "/srv/site/index.html").exists());
}
