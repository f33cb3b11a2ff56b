//! Roles' packages, users, groups and dirs, and services' reload-on, as
//! compiled into manifests (issue 13).

use std::fs;
use std::path::Path;

use drover_proto::{EntryKind, Facts, Supervisor};
use drover_spec::Project;

fn project(role: &str, service: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(p.join("drover.toml"), "[project]\nname = \"t\"\n").unwrap();
    fs::write(
        p.join("inventory.toml"),
        "[hosts.h1]\naddress = \"10.0.0.1\"\nhost-key = \"ssh-ed25519 AAAA\"\nroles = [\"app\"]\n",
    )
    .unwrap();
    fs::create_dir_all(p.join("roles")).unwrap();
    fs::create_dir_all(p.join("services")).unwrap();
    fs::create_dir_all(p.join("layers/app/etc/app")).unwrap();
    fs::create_dir_all(p.join("layers/app/srv/app")).unwrap();
    fs::write(p.join("layers/app/etc/app/site.conf"), "x\n").unwrap();
    fs::write(p.join("layers/app/srv/app/bin"), "x\n").unwrap();
    fs::write(p.join("roles/app.toml"), format!("layers = [\"app\"]\nservices = [\"app\"]\n{role}")).unwrap();
    fs::write(p.join("services/app.toml"), service).unwrap();
    dir
}

fn facts() -> Facts {
    Facts {
        supervisor: Some(Supervisor::Runit),
        os_id: "debian".into(),
        os_version: "12".into(),
        arch: "x86_64".into(),
        ..Default::default()
    }
}

fn load(p: &Path) -> Project {
    Project::load(p).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn reload_on_paths_become_reload_triggers_and_never_restart_triggers() {
    let d = project(
        "",
        "command = \"sleep 1000\"\nrestart-on = [\"/srv/app/**\"]\nreload-on = [\"/etc/app/**\", \"/srv/app/bin\"]\n",
    );
    let p = load(d.path());
    let c = p.compile(&p.hosts[0], &facts(), 1).unwrap();
    let s = &c.manifest.services[0];
    assert!(s.triggers.contains(&"/srv/app/bin".to_string()), "{s:?}");
    assert!(!s.triggers.contains(&"/etc/app/site.conf".to_string()), "{s:?}");
    assert_eq!(s.reload_triggers, ["/etc/app/site.conf"], "a path matching both restarts");
}

#[test]
fn users_groups_and_dirs_compile_into_the_manifest() {
    let role = r#"
[groups.g]
gid = 700
[users.u]
uid = 700
group = "g"
groups = ["adm"]
home = "/home/u"
[dirs."/srv/data"]
owner = "u"
mode = "0750"
"#;
    let d = project(role, "command = \"sleep 1000\"\n");
    let p = load(d.path());
    let m = p.compile(&p.hosts[0], &facts(), 1).unwrap().manifest;
    assert_eq!(m.setup.groups[0].gid, Some(700));
    assert_eq!(m.setup.users[0].groups, ["adm"]);
    let e = m.entry("/srv/data").unwrap();
    assert_eq!((&e.kind, e.mode, e.owner.as_str(), e.group.as_str()), (&EntryKind::Dir, 0o750, "u", "root"));
}

#[test]
fn bad_setup_declarations_are_refused_naming_the_role_file() {
    for (role, want) in [
        ("packages = [\"-rf\"]\n", "not starting with -"),
        ("packages = [\"a\"]\npackages-absent = [\"a\"]\n", "both in packages and packages-absent"),
        ("[dirs.\"relative\"]\nmode = \"0755\"\n", "absolute"),
        ("[dirs.\"/srv/x\"]\nmode = \"999\"\n", "not an octal permission"),
        ("[users.u]\nshell = \"sh\"\n", "absolute paths"),
    ] {
        let d = project(role, "command = \"sleep 1000\"\n");
        let e = format!("{:?}", Project::load(d.path()).err().unwrap_or_else(|| panic!("{role} accepted")));
        assert!(e.contains(want) && e.contains("roles/app.toml"), "{role}: {e}");
    }
}

#[test]
fn a_package_list_changed_since_the_lock_is_an_error_telling_to_relock() {
    let d = project("packages = [\"sl\"]\n", "command = \"sleep 1000\"\n");
    let p = load(d.path());
    let e = format!("{:?}", p.compile(&p.hosts[0], &facts(), 1).err().unwrap());
    assert!(e.contains("no packages.lock"), "{e}");
    fs::write(
        d.path().join("packages.lock"),
        "version = 1\n[requests]\napp = [\"figlet\"]\n[[targets]]\ntarget = \"debian-12-amd64\"\nroles = { app = [] }\npackages = []\n",
    )
    .unwrap();
    let p = load(d.path());
    let e = format!("{:?}", p.compile(&p.hosts[0], &facts(), 1).err().unwrap());
    assert!(e.contains("role app's packages changed") && e.contains("drover packages lock"), "{e}");
}

/// A fleet of amd64 and aarch64 hosts: each host compiles to its own
/// architecture's locked closure (the agent reports `aarch64`, the lock
/// says `arm64`), and a host whose target the lock lacks is told the exact
/// command that adds it.
#[test]
fn each_host_gets_its_own_architectures_closure_and_an_unlocked_one_is_told_to_lock_it() {
    let d = project("packages = [\"sl\"]\n", "command = \"sleep 1000\"\n");
    let (amd, arm) = ("a".repeat(64), "b".repeat(64));
    fs::create_dir_all(d.path().join(".drover/packages")).unwrap();
    for h in [&amd, &arm] {
        fs::write(d.path().join(format!(".drover/packages/{h}.deb")), "x").unwrap();
    }
    let target = |arch: &str, hash: &str| {
        format!(
            "[[targets]]\ntarget = \"debian-12-{arch}\"\nroles = {{ app = [\"sl\"] }}\n[[targets.packages]]\nname = \"sl\"\nversion = \"5.02-1\"\narch = \"{arch}\"\nfilename = \"sl_5.02-1_{arch}.deb\"\nblake3 = \"{hash}\"\nsize = 1\n"
        )
    };
    let head = "version = 1\n[requests]\napp = [\"sl\"]\n";
    fs::write(d.path().join("packages.lock"), format!("{head}{}{}", target("amd64", &amd), target("arm64", &arm)))
        .unwrap();
    let p = load(d.path());
    for (machine, arch, hash) in [("x86_64", "amd64", &amd), ("aarch64", "arm64", &arm)] {
        let f = Facts { arch: machine.into(), ..facts() };
        assert_eq!(drover_spec::lock::target_of(&f), Some(format!("debian-12-{arch}")));
        let m = p.compile(&p.hosts[0], &f, 1).unwrap_or_else(|e| panic!("{machine}: {e:?}")).manifest;
        let got: Vec<(&str, &str, String)> =
            m.setup.packages.iter().map(|p| (p.name.as_str(), p.arch.as_str(), p.hash.to_hex())).collect();
        assert_eq!(got, [("sl", arch, hash.clone())], "{machine}");
    }

    fs::write(d.path().join("packages.lock"), format!("{head}{}", target("amd64", &amd))).unwrap();
    let p = load(d.path());
    let e = format!("{:?}", p.compile(&p.hosts[0], &Facts { arch: "aarch64".into(), ..facts() }, 1).err().unwrap());
    assert!(
        e.contains("packages.lock")
            && e.contains("host h1 is debian-12-arm64")
            && e.contains("it has: debian-12-amd64")
            && e.contains("drover packages lock --target debian-12-arm64"),
        "{e}"
    );
}
