//! One image service on hosts of two architectures (docs/containers.md,
//! "Hosts of several architectures"): the controller prepared the image
//! for x86_64 and aarch64, and each host's compile gets the root
//! filesystem and config of its own; a host of an architecture the image
//! lacks is refused with the service file, the image and what it has.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use drover_proto::{EntryKind, Facts, Supervisor};
use drover_spec::container::prepared::{PreparedArch, PreparedFile, PreparedImage, PreparedKind, SourceKey};
use drover_spec::Project;

use crate::support::{facts, render_error, write};

const IMAGE: &str = "reg.example/app:1";
const LOCK_HASH: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const ROOT: &str = "/var/lib/drover/containers/app/rootfs";

fn aarch64() -> Facts {
    Facts { arch: "aarch64".into(), ..facts(Supervisor::Runit) }
}

/// A file of the image: its content goes to the prepared image's blob
/// directory, named by its hash.
fn file(blobs: &Path, path: &str, mode: u32, content: &str) -> PreparedFile {
    let hash = blake3::hash(content.as_bytes()).to_hex().to_string();
    fs::write(blobs.join(&hash), content).unwrap();
    let kind = PreparedKind::File { hash, size: content.len() as u64 };
    PreparedFile { path: path.into(), mode, uid: 0, gid: 0, kind }
}

fn dir(path: &str) -> PreparedFile {
    PreparedFile { path: path.into(), mode: 0o755, uid: 0, gid: 0, kind: PreparedKind::Dir }
}

/// The image as built for `arch`: its own loader and binary, its own
/// `app` user (uid 100 on x86_64, 200 on aarch64), a symlink, and config.
fn arch_image(blobs: &Path, arch: &str, loader: &str) -> PreparedArch {
    let uid = if arch == "x86_64" { 100 } else { 200 };
    let mut app = file(blobs, "/bin/app", 0o755, &format!("ELF {arch} app\n"));
    app.uid = uid;
    PreparedArch {
        manifest: format!("sha256:{}", blake3::hash(arch.as_bytes()).to_hex()),
        entrypoint: vec!["/bin/app".into()],
        cmd: vec![format!("--serve-{arch}")],
        env: vec![format!("BUILT_FOR={arch}"), "PATH=/bin".into()],
        user: "app".into(),
        workdir: format!("/srv/{arch}"),
        files: vec![
            dir("/bin"),
            app,
            PreparedFile {
                path: "/bin/sh".into(),
                mode: 0o777,
                uid: 0,
                gid: 0,
                kind: PreparedKind::Symlink { target: "app".into() },
            },
            dir("/etc"),
            file(blobs, "/etc/group", 0o644, &format!("root:x:0:\napp:x:{uid}:\n")),
            file(blobs, "/etc/passwd", 0o644, &format!("root:x:0:0::/:/bin/sh\napp:x:{uid}:{uid}::/:/bin/sh\n")),
            dir("/lib"),
            file(blobs, loader, 0o755, &format!("{arch} loader\n")),
        ],
    }
}

/// A project whose hosts h1 and h2 run service `app` from [`IMAGE`],
/// prepared for `arches` (`missing`: what the registry said it lacks),
/// with runc locked for both hosts' targets.
fn project(arches: &[&str], missing: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write(p, "drover.toml", "[project]\nname = \"t\"\n");
    write(
        p,
        "inventory.toml",
        "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"app\"]\n[hosts.h2]\naddress = \"10.0.0.2\"\nroles = [\"app\"]\n",
    );
    write(p, "roles/app.toml", "services = [\"app\"]\n");
    write(p, "services/app.toml", &format!("image = {IMAGE:?}\n"));
    write(p, &format!(".drover/packages/{LOCK_HASH}.deb"), "x");
    let target = |t: &str, a: &str| {
        format!("[[targets]]\ntarget = \"debian-12-{a}\"\nroles = {{ app = [\"runc\"] }}\n[[targets.packages]]\nname = \"runc\"\nversion = \"1.1.5+ds1-1+deb12u1\"\narch = \"{a}\"\nfilename = \"runc_1.1.5+ds1-1+deb12u1_{t}.deb\"\nblake3 = \"{LOCK_HASH}\"\nsize = 1\n")
    };
    write(
        p,
        "packages.lock",
        &format!("version = 1\n[requests]\napp = [\"runc\"]\n{}{}", target("amd64", "amd64"), target("arm64", "arm64")),
    );
    let blobs = p.join(".drover/images/files");
    fs::create_dir_all(&blobs).unwrap();
    let mut img = PreparedImage {
        format: drover_spec::container::prepared::PREPARED_FORMAT,
        files_dir: blobs.clone(),
        arches: BTreeMap::new(),
        missing: missing.iter().map(|(a, h)| (a.to_string(), h.to_string())).collect(),
    };
    for a in arches {
        let loader = if *a == "x86_64" { "/lib/ld-linux-x86-64.so.2" } else { "/lib/ld-linux-aarch64.so.1" };
        img.arches.insert(a.to_string(), arch_image(&blobs, a, loader));
    }
    img.write(&SourceKey::Registry(IMAGE.into()), p).unwrap();
    d
}

/// Every rootfs entry of a compiled host: path, kind (with the content
/// hash), mode and owner.
fn rootfs(c: &drover_spec::Compiled) -> BTreeMap<String, String> {
    let entries = c.manifest.entries.iter().filter(|e| e.path.starts_with(ROOT));
    entries
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::Dir => "dir".to_string(),
                EntryKind::File { hash, size } => format!("file {} {size}", hash.to_hex()),
                EntryKind::Symlink { target } => format!("-> {target}"),
            };
            (e.path[ROOT.len()..].to_string(), format!("{kind} {:o} {}:{}", e.mode, e.owner, e.group))
        })
        .collect()
}

/// What [`rootfs`] must be for the image of `arch`: its files exactly,
/// and the mount points runc needs (the same for every architecture).
fn expected(p: &Path, arch: &str) -> BTreeMap<String, String> {
    let text = fs::read(SourceKey::Registry(IMAGE.into()).path(p)).unwrap();
    let img: PreparedImage = serde_json::from_slice(&text).unwrap();
    let owner = |id: u32| if id == 0 { "root".to_string() } else { id.to_string() };
    let mut out: BTreeMap<String, String> = img.arches[arch]
        .files
        .iter()
        .map(|f| {
            let kind = match &f.kind {
                PreparedKind::Dir => "dir".to_string(),
                PreparedKind::File { hash, size } => format!("file {hash} {size}"),
                PreparedKind::Symlink { target } => format!("-> {target}"),
            };
            (f.path.clone(), format!("{kind} {:o} {}:{}", f.mode, owner(f.uid), owner(f.gid)))
        })
        .collect();
    let empty = blake3::hash(b"").to_hex();
    out.insert(String::new(), "dir 755 root:root".into());
    for d in ["/proc", "/dev", "/sys", "/tmp", "/run"] {
        out.insert(d.into(), "dir 755 root:root".into());
    }
    for f in ["/etc/hosts", "/etc/resolv.conf"] {
        out.insert(f.into(), format!("file {empty} 0 644 root:root"));
    }
    out
}

fn config(c: &drover_spec::Compiled) -> serde_json::Value {
    let path = "/var/lib/drover/containers/app/config.json";
    serde_json::from_str(&super::text(c, path)).unwrap()
}

fn load(p: &Path) -> Project {
    Project::load(p).unwrap_or_else(|e| panic!("{}", render_error(e)))
}

/// h1 (x86_64) and h2 (aarch64) run the same `image = "reg/app:1"`
/// service: each host's whole rootfs (every path, kind, content hash,
/// mode and owner) is its architecture's, with nothing of the other's, and
/// its bundle runs its architecture's entrypoint, command, env, workdir
/// and user (resolved in its own /etc/passwd).
#[test]
fn one_image_service_compiles_each_hosts_own_architecture_rootfs_and_config() {
    let d = project(&["aarch64", "x86_64"], &[]);
    let p = load(d.path());
    let x86 = p.compile(&p.hosts[0], &facts(Supervisor::Runit), 1).unwrap_or_else(|e| panic!("{}", render_error(e)));
    let arm = p.compile(&p.hosts[1], &aarch64(), 1).unwrap_or_else(|e| panic!("{}", render_error(e)));
    for (c, arch, other_loader) in
        [(&x86, "x86_64", "/lib/ld-linux-aarch64.so.1"), (&arm, "aarch64", "/lib/ld-linux-x86-64.so.2")]
    {
        let got = rootfs(c);
        assert_eq!(got, expected(d.path(), arch), "{arch}");
        assert!(!got.contains_key(other_loader), "{arch}");
        // Every file's bytes are its architecture's.
        for e in c.manifest.entries.iter().filter(|e| e.path.starts_with(ROOT)) {
            if let EntryKind::File { hash, .. } = e.kind {
                let bytes = match &c.blobs[&hash] {
                    drover_spec::BlobSource::Bytes(b) => b.to_vec(),
                    drover_spec::BlobSource::File(f) => fs::read(f).unwrap(),
                };
                assert_eq!(blake3::hash(&bytes).as_bytes(), &hash.0, "{}", e.path);
            }
        }
        let uid = if arch == "x86_64" { 100 } else { 200 };
        let cfg = config(c);
        let process = &cfg["process"];
        assert_eq!(process["args"], serde_json::json!(["/bin/app", format!("--serve-{arch}")]), "{arch}");
        assert_eq!(process["cwd"], format!("/srv/{arch}"), "{arch}");
        assert_eq!((process["user"]["uid"].as_u64(), process["user"]["gid"].as_u64()), (Some(uid), Some(uid)));
        let env: Vec<&str> = process["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(env.contains(&format!("BUILT_FOR={arch}").as_str()), "{arch}: {env:?}");
    }
}

/// An image prepared for x86_64 only, the registry having said it has no
/// arm64 build: the x86_64 host compiles; the aarch64 host is refused,
/// naming the service file, the image, its architecture, what the image
/// has and the fix. An architecture the image was never pulled for says
/// that instead, and how to get it.
#[test]
fn a_host_of_an_architecture_the_image_lacks_is_refused_naming_the_service_image_and_what_it_has() {
    let d = project(&["x86_64"], &[("aarch64", "linux/amd64")]);
    let p = load(d.path());
    p.compile(&p.hosts[0], &facts(Supervisor::Runit), 1).unwrap_or_else(|e| panic!("{}", render_error(e)));
    let Err(e) = p.compile(&p.hosts[1], &aarch64(), 1) else { panic!("the aarch64 host compiled") };
    let msg = render_error(e);
    for want in [
        "services/app.toml",
        "host h2: image reg.example/app:1 has no aarch64 image (it has: linux/amd64), and this host is aarch64",
        "build and push the image for aarch64 too",
        "place the service on hosts of an architecture it has (x86_64)",
    ] {
        assert!(msg.contains(want), "{want:?} in\n{msg}");
    }

    let riscv = Facts { arch: "riscv64".into(), ..facts(Supervisor::Runit) };
    let Err(e) = p.compile(&p.hosts[1], &riscv, 1) else { panic!("the riscv64 host compiled") };
    let msg = render_error(e);
    assert!(msg.contains("services/app.toml") && msg.contains("was not pulled for riscv64 (only for x86_64)"), "{msg}");
}
