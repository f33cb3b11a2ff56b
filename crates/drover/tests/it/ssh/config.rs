//! ssh_config-only projects (docs/ssh.md, "ssh_config").

use super::tools::said;
use crate::support::Fleet;

/// Item 2: an inventory of bare names, everything else from the ssh_config
/// given by -F (HostName, User, Port, IdentityFile, UserKnownHostsFile);
/// `inventory show` says where each value came from, and the inventory
/// wins where it states a value.
#[test]
fn an_inventory_of_bare_names_applies_through_ssh_config_and_show_names_each_source() {
    let f = Fleet::new("ssh-config", 1);
    let h = &f.lab_hosts()[0];
    let lab_key = drover_lab::Lab::open(f.lab_name()).unwrap().key_path();
    let tmp = tempfile::tempdir().unwrap();
    let known = tmp.path().join("known");
    std::fs::write(&known, format!("web1 {}\n", h.host_key)).unwrap();
    let cfg = tmp.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "# lab\nHost web*\n  HostName {}\n  Port 22\nHost *\n  User root\n  IdentityFile {}\n  UserKnownHostsFile {}\n  ConnectTimeout 7\n",
            h.address,
            lab_key.display(),
            known.display()
        ),
    )
    .unwrap();
    let inv = f.project().join("inventory.toml");
    std::fs::write(&inv, "# bare names: ssh_config says how\n[hosts.web1]\n").unwrap();
    let cfg_flag = cfg.display().to_string();

    let r = f.drover(&["-F", &cfg_flag, "apply", "--json"]);
    assert_eq!(r.code, 0, "apply through ssh_config:\n{}", said(&r));

    let r = f.drover(&["-F", &cfg_flag, "inventory", "show", "web1", "--json"]);
    assert_eq!(r.code, 0, "{}", said(&r));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let source = |field: &str| {
        v["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["field"] == field)
            .map(|x| (x["value"].as_str().unwrap().to_string(), x["source"].as_str().unwrap().to_string()))
            .unwrap_or_else(|| panic!("{field} in {v}"))
    };
    let c = cfg.display().to_string();
    assert_eq!(source("address"), (h.address.to_string(), format!("{c}:3")));
    assert_eq!(source("port"), ("22".into(), format!("{c}:4")));
    assert_eq!(source("user"), ("root".into(), format!("{c}:6")));
    assert_eq!(source("identity-file"), (lab_key.display().to_string(), format!("{c}:7")));
    assert_eq!(source("connect-timeout"), ("7s".into(), format!("{c}:9")));
    assert_eq!(source("host-key").1, format!("{}:1", known.display()));

    // The inventory wins where it is explicit, and says so with its line.
    std::fs::write(&inv, "# bare names: ssh_config says how\n[hosts.web1]\nport = 22\n").unwrap();
    let r = f.drover(&["-F", &cfg_flag, "inventory", "show", "web1"]);
    assert_eq!(r.code, 0, "{}", said(&r));
    let port = r.stdout.lines().find(|l| l.trim_start().starts_with("port ")).unwrap_or_default();
    assert!(port.trim_end().ends_with("inventory.toml:3"), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.contains("address") && l.ends_with(&format!("{c}:3"))), "{}", r.stdout);
}

/// Items 1-2 joined: ssh_config's `ProxyJump` reaches hosts behind the lab's
/// bastion (no route from here) when the inventory sets no `proxy-jump`, and
/// `inventory show` says the jump came from ssh_config.
#[test]
fn ssh_config_proxyjump_reaches_hosts_behind_a_bastion() {
    let f = Fleet::behind_bastion("ssh-config-jump", 1);
    let b = f.bastion();
    let inv = f.project().join("inventory.toml");
    let text = std::fs::read_to_string(&inv).unwrap();
    let without: String = text.lines().filter(|l| !l.starts_with("proxy-jump")).map(|l| format!("{l}\n")).collect();
    assert_ne!(text, without, "the lab inventory had a proxy-jump line");
    std::fs::write(&inv, without).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::write(&cfg, format!("Host h*\n  ProxyJump root@{}\n", b.address)).unwrap();
    let cfg_flag = cfg.display().to_string();

    let r = f.drover(&["exec", "all", "--", "true"]);
    assert_ne!(r.code, 0, "without the jump the hosts are unreachable:\n{}", said(&r));
    let r = f.drover(&["-F", &cfg_flag, "apply", "--json"]);
    assert_eq!(r.code, 0, "through ssh_config's ProxyJump:\n{}", said(&r));

    let r = f.drover(&["-F", &cfg_flag, "inventory", "show", "h1"]);
    let line = r.stdout.lines().find(|l| l.trim_start().starts_with("proxy-jump")).unwrap_or_default();
    assert!(
        line.contains(&format!("root@{}", b.address)) && line.ends_with(&format!("{}:2", cfg.display())),
        "{}",
        r.stdout
    );
}

/// Item 2: drover.toml's `[ssh] config` names the ssh_config (relative to
/// the project), `-F` overrides it, `Include` and `Host` negation apply, and
/// a bad value stops the load naming its file and line.
#[test]
fn ssh_config_from_drover_toml_is_overridden_by_f_and_a_bad_value_names_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = crate::support::sim_project(tmp.path(), 2);
    let toml = proj.join("drover.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[ssh]\nconfig = \"ssh/config\"\n")).unwrap();
    std::fs::create_dir_all(proj.join("ssh/conf.d")).unwrap();
    std::fs::write(proj.join("ssh/config"), "Host s* !s2\n  Include conf.d/*.conf\nHost *\n  User fallback\n").unwrap();
    std::fs::write(proj.join("ssh/conf.d/users.conf"), "User deploy\n").unwrap();
    let user = |args: &[&str]| {
        let r = crate::support::drover_in(&proj, args);
        assert_eq!(r.code, 0, "{}", said(&r));
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let u = v["values"].as_array().unwrap().iter().find(|x| x["field"] == "user").unwrap().clone();
        (u["value"].as_str().unwrap().to_string(), u["source"].as_str().unwrap().to_string())
    };
    let (u, at) = user(&["inventory", "show", "s1", "--json"]);
    assert_eq!(u, "deploy");
    assert!(at.ends_with("ssh/conf.d/users.conf:1"), "{at}");
    assert_eq!(user(&["inventory", "show", "s2", "--json"]).0, "fallback", "!s2 excludes s2");

    let other = tmp.path().join("other_config");
    std::fs::write(&other, "Host *\n  User from-f\n").unwrap();
    let f = other.display().to_string();
    assert_eq!(user(&["-F", &f, "inventory", "show", "s1", "--json"]).0, "from-f");

    std::fs::write(&other, "Host *\n  Port twenty\n").unwrap();
    let r = crate::support::drover_in(&proj, &["-F", &f, "inventory", "show", "s1"]);
    assert_ne!(r.code, 0);
    assert!(said(&r).contains(&format!("{f}:2")) && said(&r).contains("port"), "{}", said(&r));
}
